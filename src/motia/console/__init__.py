"""The Console: a web page at ``/__motia`` to inspect and edit state, watch state events and stream changes,
browse streams, see the steps, the dead letters and, with tracing on, the recent traces.

The routes live in ``motia.console.routes`` (the Streams view's: ``motia.console.streams``; who may use
them: ``motia.console.auth``) and are mounted by ``motia run`` (``motia.cli``). The live feed reads the
runtime's event hub, ``motia.runtime.events`` (``motia.console.events`` re-exports it), to which the
console's stream feed adds the stream changes it tails from the store. Nothing is imported here, so
importing a console module pulls in only what it needs.
"""
