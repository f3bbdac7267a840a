"""The project's ``.env`` file, read when the ``motia`` command starts, as upstream's ``motia`` does.

Variables already set in the environment win over the file's, so ``MOTIA_STATE_URL=... motia run``
still overrides a ``.env`` that sets it. python-dotenv is imported here only, never by ``import motia``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["load_project_env"]


def load_project_env(path: str | os.PathLike[str] = ".env") -> Path | None:
    """Load ``path`` (relative to the current directory) into ``os.environ`` without overriding a variable
    already set; return the file loaded, or ``None`` when there is none."""
    from dotenv import load_dotenv

    env_file = Path(path)
    if not env_file.is_file():
        return None
    load_dotenv(env_file, override=False)
    return env_file.resolve()
