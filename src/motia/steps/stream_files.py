"""Stream discovery: the ``*_stream.py`` / ``*.stream.py`` files under the steps directory, and the
``Stream(StreamConfig(...))`` objects of step files.

A stream file declares its stream with a module-level ``config`` (dict or :class:`StreamConfig`, with
optional ``can_access`` / ``on_join`` / ``on_leave`` functions beside it) or with ``Stream`` objects.
``Stream("name")`` only refers to a stream; it declares nothing. Two declarations of one name fail
start-up naming both files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from motia.exceptions import ConfigError, StepLoadError
from motia.steps.loader import LoadedStep, display_path, import_file, module_name
from motia.streams.config import StreamConfig, StreamDefinition, definition_from_config
from motia.streams.stream import Stream

__all__ = ["discover_stream_files", "is_stream_file", "load_streams"]

_HOOKS = ("can_access", "on_join", "on_leave")


def is_stream_file(name: str) -> bool:
    """``True`` for ``*_stream.py`` (Motia's Python convention) and ``*.stream.py``."""
    return name.endswith(("_stream.py", ".stream.py")) and name not in ("_stream.py", ".stream.py")


def discover_stream_files(directory: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__", "node_modules")))
        found.extend(Path(root) / f for f in sorted(files) if is_stream_file(f))
    return found


def _declared(module: ModuleType, path: Path, *, stream_file: bool) -> list[StreamDefinition]:
    """The streams ``module`` declares: its ``Stream(StreamConfig(...))`` objects and, in a stream file,
    its ``config``."""
    shown = display_path(path)
    found = [
        value.definition
        for value in vars(module).values()
        if isinstance(value, Stream) and value.definition is not None
    ]
    config = getattr(module, "config", None)
    if stream_file and not found:
        if not isinstance(config, dict | StreamConfig):
            raise StepLoadError(
                f"{shown}: a stream file needs a module-level `config` (a dict or StreamConfig) or a "
                "Stream(StreamConfig(...)) object"
            )
        hooks = {name: getattr(module, name) for name in _HOOKS if getattr(module, name, None) is not None}
        try:
            found.append(definition_from_config(config, source=str(path), hooks=hooks))
        except ConfigError as exc:
            raise StepLoadError(f"{shown}: {exc}") from exc
    return found


def load_streams(directory: str | os.PathLike[str], steps: Iterable[LoadedStep] = ()) -> list[StreamDefinition]:
    """Every stream declared under ``directory``: its stream files, and the ``Stream`` objects of the
    already-loaded ``steps``' modules. Raises :class:`StepLoadError` naming the file(s) on a problem."""
    definitions: dict[str, StreamDefinition] = {}
    sources: list[tuple[Path, ModuleType, bool]] = []
    for loaded in steps:
        module = sys.modules.get(module_name(loaded.path))
        if module is not None:
            sources.append((loaded.path, module, False))
    for path in discover_stream_files(Path(directory)):
        sources.append((path, import_file(path, lambda module: module), True))
    seen: set[int] = set()
    for path, module, stream_file in sources:
        if id(module) in seen:
            continue
        seen.add(id(module))
        for definition in _declared(module, path, stream_file=stream_file):
            existing = definitions.get(definition.name)
            if existing is None or existing == definition:
                definitions[definition.name] = definition
                continue
            raise StepLoadError(
                f"{display_path(path)}: duplicate stream name {definition.name!r} (also declared in "
                f"{_shown(existing.source)})"
            )
    return [definitions[name] for name in sorted(definitions)]


def _shown(source: str | None) -> str:
    return "<code>" if source is None else display_path(Path(source))
