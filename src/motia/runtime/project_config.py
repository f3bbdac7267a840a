"""``motia_config.py``: the project's optional settings module, in the directory ``motia run`` starts in.

It is imported once per process (kept in ``sys.modules`` as ``motia_config``) and read by name:
``stream_authenticate`` (see :mod:`motia.runtime.streams.auth`), ``strict_topics``, ``idempotency`` and
``retention`` and ``on_dead_letter`` (see :mod:`motia.runtime.dead_letter_notice`). A
file that fails to import raises :class:`~motia.exceptions.ConfigError` naming it: a project whose settings
cannot be read does not start with defaults it did not choose.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from motia.exceptions import ConfigError
from motia.runtime.dead_letter_notice import DeadLetterHook
from motia.runtime.queue import strict_topics_from_env
from motia.steps.triggers import idempotency_setting

__all__ = [
    "CONFIG_MODULE",
    "dead_letter_hook",
    "idempotency_config",
    "load_project_config",
    "retention_config",
    "strict_topics_setting",
]

CONFIG_MODULE = "motia_config"


def load_project_config(project_dir: str | Path) -> ModuleType | None:
    """The imported ``project_dir/motia_config.py``, or ``None`` when there is no such file."""
    path = Path(project_dir) / f"{CONFIG_MODULE}.py"
    if not path.is_file():
        return None
    module = sys.modules.get(CONFIG_MODULE)
    if module is None or Path(getattr(module, "__file__", "") or "").resolve() != path.resolve():
        spec = importlib.util.spec_from_file_location(CONFIG_MODULE, path)
        if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
            raise ConfigError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"{path} failed to import: {type(exc).__name__}: {exc}") from exc
        sys.modules[CONFIG_MODULE] = module
    return module


def strict_topics_setting(project_dir: str | Path) -> bool:
    """Whether to refuse messages nobody subscribes to: ``MOTIA_STRICT_TOPICS`` when set, else
    ``strict_topics`` of ``motia_config.py`` (a ``bool``; anything else is a ``ConfigError``), else ``False``."""
    module = load_project_config(project_dir)
    configured = getattr(module, "strict_topics", None) if module is not None else None
    if configured is not None and not isinstance(configured, bool):
        raise ConfigError(
            f"strict_topics in {Path(project_dir) / (CONFIG_MODULE + '.py')} must be True or False, "
            f"not {type(configured).__name__}"
        )
    return strict_topics_from_env(default=bool(configured))


def idempotency_config(project_dir: str | Path) -> bool | dict[str, Any] | None:
    """``idempotency`` of ``motia_config.py`` (``True``, ``False`` or ``{"ttl": seconds}``: every HTTP route
    that does not choose handles ``Idempotency-Key``), checked here so a bad value fails at start."""
    module = load_project_config(project_dir)
    configured = getattr(module, "idempotency", None) if module is not None else None
    idempotency_setting(configured, f"idempotency in {Path(project_dir) / (CONFIG_MODULE + '.py')}")
    return dict(configured) if isinstance(configured, Mapping) else configured


def retention_config(project_dir: str | Path) -> dict[str, Any]:
    """``retention`` of ``motia_config.py``: a dict of ``DeliveryOptions`` retention fields in seconds
    (``{"dead_letter_retention": 7 * 86400, "stream_retention": 0}``), ``{}`` when absent. Its keys and
    values are checked by ``DeliveryOptions.from_env``; anything but a dict is a ``ConfigError`` here."""
    module = load_project_config(project_dir)
    configured = getattr(module, "retention", None) if module is not None else None
    if configured is None:
        return {}
    if not isinstance(configured, Mapping):
        raise ConfigError(
            f"retention in {Path(project_dir) / (CONFIG_MODULE + '.py')} must be a dict of seconds "
            f"(e.g. {{'dead_letter_retention': 604800}}), not {type(configured).__name__}"
        )
    return dict(configured)


def dead_letter_hook(project_dir: str | Path) -> DeadLetterHook | None:
    """``on_dead_letter`` of ``motia_config.py`` (a sync or async callable taking the record of a new dead
    letter), or ``None``; anything else that is not ``None`` is a ``ConfigError`` at start."""
    module = load_project_config(project_dir)
    configured = getattr(module, "on_dead_letter", None) if module is not None else None
    if configured is not None and not callable(configured):
        raise ConfigError(
            f"on_dead_letter in {Path(project_dir) / (CONFIG_MODULE + '.py')} must be a function, "
            f"not {type(configured).__name__}"
        )
    hook: DeadLetterHook | None = configured
    return hook
