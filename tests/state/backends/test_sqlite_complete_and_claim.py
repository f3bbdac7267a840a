"""``complete_and_claim`` on SQLite (issue 15): the completions and the claim are one transaction, so a claim
that fails takes its completions back with it (the deliveries stay leased: claimed again once the lease ends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from motia import StateManager
from motia.exceptions import MotiaError
from motia.state.backends.types import NewDelivery


async def test_a_failed_claim_takes_its_completions_back(tmp_path: Path) -> None:
    # Given two deliveries held by "a"
    async with StateManager.from_url(f"sqlite:///{tmp_path / 'state.db'}") as sm:
        backend = sm.backend
        await backend.enqueue([NewDelivery(f"m{n}", "w", "queue", b"1") for n in range(2)])
        assert [d.id for d in await backend.claim(["w"], owner="a", limit=2, lease=60)] == ["m0", "m1"]
        # When "a" completes m0 in a call whose claim fails (a step name SQLite cannot bind), after the delete
        unbindable: Any = object()
        with pytest.raises(MotiaError):
            await backend.complete_and_claim(["m0"], owner="a", steps=[unbindable], limit=5, lease=60)
        # Then m0 was not completed: still there, still "a"'s
        assert await backend.pending("w") == 2
        assert await backend.complete_and_claim(["m0", "m1"], owner="a", steps=["w"], limit=5, lease=60) == (
            {"m0", "m1"},
            [],
        )
        assert await backend.pending("w") == 0
