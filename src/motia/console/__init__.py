"""The Console: a web page at ``/__motia`` to inspect and edit state, watch state events and see the steps.

``motia.console.events`` (the in-process event hub) is imported by the runtime; the routes live in
``motia.console.routes`` and are mounted by ``motia run``. Nothing is imported here so that the runtime
can import the hub without pulling in the web part.
"""
