"""The Redis key layout of a store: every key name in one place.

The function library (``functions.lua``) derives the same names from the one key every call passes,
``{P}:meta``; the Python side builds only the few it reads or writes directly, with the functions below.

Key layout (``P`` is the ``prefix`` option, default ``motia``; every key starts with the hash tag
``{P}``, so every function call touches one hash slot, as Redis Cluster would require)::

    {P}:meta                hash: events flag, event and delivery counters
    {P}:scopes              zset: scopes holding at least one key, in key order (list_groups)
    {P}:k:<scope>           zset (all scores 0): the scope's keys, for ordered pages (ZRANGE BYLEX)
    {P}:v:<scope>           hash: key -> "version|expires_at|token|json"
    {P}:x:<scope>           zset: key -> expires_at, for keys with a TTL
    {P}:xs                  zset: scopes with keys that have a TTL (purge)
    {P}:events              stream: change events not yet dispatched (the outbox)
    {P}:subs                set: state-trigger subscriptions of every app using the store
    {P}:d:<id>              hash: one pending delivery (avail: when a delayed one becomes claimable)
    {P}:due:<step>          zset: claimable deliveries of a step, scored by when they become claimable
    {P}:head:<step>\\n<ok>   string / {P}:chain:<step>\\n<ok> list: deliveries sharing an order key
    {P}:slots:<step>\\n<ok>  counter / {P}:schain:<step>\\n<ok> list: the same for an order key with more than
                            one slot (``NewDelivery.order_slots``): how many are in the due set, and the rest
    {P}:pending             hash: step -> unsettled deliveries
    {P}:dead                list: dead letters (JSON)
    {P}:deadids             set: ids of the dead letters (add_dead_letters skips those; stores written before
                            it existed lack the older ids)
    {P}:w:<token>           string, expires after timeout + 30 s: the reply to one write, or the ids one claim
                            leased (makes a retry safe)
    {P}:tick:<job>:<ms>     string, expires: the instance that runs one cron tick
    {P}:lease:<name>        string "expires_at|owner": a named lease (kept by Redis LEASE_KEEP s past its ttl)
    {P}:steps               zset: step -> when an app last said it serves it (touch_steps; retention)
    {P}:s:...               streams: items, per-group seq and history, the change log every instance tails,
                            stream triggers (the layout is in ``streams.lua``; ``{P}:meta`` field ``spos``
                            holds the newest position)

One store lives in one hash slot: on a Redis Cluster stores (prefixes) could be spread over shards,
scopes of one store could not. That is the price of committing a write and its change event
atomically, which Cluster allows only inside one slot; a per-scope tag would split them.
"""

from __future__ import annotations


def meta_key(prefix: str) -> str:
    """``{P}:meta``: the key every function call passes (its hash tag names the store's slot)."""
    return f"{{{prefix}}}:meta"


def values_key(prefix: str, scope: str) -> str:
    """``{P}:v:<scope>``: the hash of a scope's records."""
    return f"{{{prefix}}}:v:{scope}"


def tick_key(prefix: str, job: str, tick_ms: int) -> str:
    """``{P}:tick:<job>:<ms>``: the claim of one cron tick."""
    return f"{{{prefix}}}:tick:{job}:{tick_ms}"


def steps_key(prefix: str) -> str:
    """``{P}:steps``: when an app last said it serves each step."""
    return f"{{{prefix}}}:steps"


def due_key(prefix: str, step: str) -> str:
    """``{P}:due:<step>``: the step's deliveries that are claimable or will be, scored by when."""
    return f"{{{prefix}}}:due:{step}"


def stream_group_name(stream: str, group: str) -> str:
    """A group's name in stream keys, ``<byte length of stream>:<stream>:<group>``: unambiguous whatever
    characters the names hold (``streams.lua`` builds the same)."""
    return f"{len(stream.encode())}:{stream}:{group}"


def stream_items_key(prefix: str, stream: str, group: str) -> str:
    """``{P}:s:i:<G>``: the hash of a group's items."""
    return f"{{{prefix}}}:s:i:{stream_group_name(stream, group)}"


def stream_groups_key(prefix: str, stream: str) -> str:
    """``{P}:s:g:<stream>``: the stream's groups that hold an item."""
    return f"{{{prefix}}}:s:g:{stream}"


def stream_names_key(prefix: str) -> str:
    """``{P}:s:names``: the streams that hold an item."""
    return f"{{{prefix}}}:s:names"


def stream_log_key(prefix: str) -> str:
    """``{P}:s:log``: the store-wide change log, ids ``<position>-0``."""
    return f"{{{prefix}}}:s:log"
