"""The stream server (SPEC 10.3/10.4): the hub every subscriber hangs on, the WebSocket endpoint, auth.

- :mod:`~motia.runtime.streams.hub`: :class:`StreamHub`, one per app, tails the store's change log and
  fans each change out to the local subscribers of its group;
- :mod:`~motia.runtime.streams.subscriber`: :class:`Subscriber`, one per connection (a WebSocket, an SSE
  response): its subscriptions, hooks and bounded queue of encoded messages;
- :mod:`~motia.runtime.streams.feed`: the ordering of one group's changes for one subscriber;
- :mod:`~motia.runtime.streams.websocket`: the ASGI WebSocket endpoint (``/`` and ``/__motia/streams``);
- :mod:`~motia.runtime.streams.auth`: ``stream_authenticate`` from ``motia_config.py`` and the token;
- :mod:`~motia.runtime.streams.hooks`: calling user hooks, sync or async.

The wire messages themselves are pure and live on the streams floor (:mod:`motia.streams.protocol`).
"""
