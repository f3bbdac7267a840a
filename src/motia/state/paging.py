"""Reading one page of a scope's records, with the argument checks every paged read makes first.

:meth:`StateManager.items <motia.state.manager.StateManager.items>`, :meth:`~motia.state.manager.StateManager.keys`
and :meth:`TypedScope.items <motia.state.typed.TypedScope.items>` all read through :func:`read_page`, so they
check alike.
"""

from __future__ import annotations

from motia.state import values as _values
from motia.state.backends.base import StateStore
from motia.state.backends.types import Record


async def read_page(store: StateStore, scope: str, prefix: object, after: object, limit: object) -> list[Record]:
    """The live records of ``scope`` in key order with keys ``> after`` that start with ``prefix``, at most
    ``limit`` (see :meth:`StateStore.items <motia.state.backends.base.StateStore.items>`).

    Raises :class:`~motia.exceptions.StateValueError` naming a bad argument before the store is asked.
    """
    return await store.items(
        _values.check_scope(scope),
        prefix=_values.check_optional_str("prefix", prefix),
        after=_values.check_optional_str("after", after),
        limit=_values.check_limit(limit),
    )
