"""``motia.state_manager``: the async module-level state manager of the Motia 1.0 release candidates.

``await state_manager.get("orders", "o1")`` is ``await stateManager.manager.get("orders", "o1")``: the
same store as the blocking ``motia.stateManager`` (:mod:`motia.state.sync`), which is the running app's
inside ``motia run`` (and ``motia.testing.app_client``) and otherwise ``MOTIA_STATE_URL`` or the default
SQLite file, opened on first use. Every :class:`~motia.state.manager.StateManager` method is there.
"""

from __future__ import annotations

from typing import Any

from motia.state.manager import StateManager
from motia.state.sync import stateManager

__all__ = ["ModuleStateManager", "state_manager"]


class ModuleStateManager:
    """Forwards each attribute to the store ``motia.stateManager`` currently drives (looked up per call)."""

    __slots__ = ()

    @property
    def manager(self) -> StateManager:
        """The async manager calls go to right now."""
        return stateManager.manager

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(stateManager.manager, name)

    def __dir__(self) -> list[str]:
        return sorted({*object.__dir__(self), *(n for n in dir(StateManager) if not n.startswith("_"))})

    def __repr__(self) -> str:
        return "<motia.state_manager>"


#: The module-level async state manager (the 1.0 release candidates' ``state_manager``).
state_manager = ModuleStateManager()
