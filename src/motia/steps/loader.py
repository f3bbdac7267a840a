"""Step discovery: import every ``*_step.py`` / ``*.step.py`` under a directory and collect its steps.

A file declares steps by holding ``Step`` objects (``default = step(...)``, ``@step(...)``) or a
module-level ``config`` dict plus ``handler`` function. Every problem (import error, bad config,
duplicate step name or route, invalid cron expression, a missing ``include_files`` entry) raises
``StepLoadError`` naming the file; :func:`check_steps_dir` collects them all instead (``motia check``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import sys
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from motia.exceptions import ConfigError, StepLoadError
from motia.steps.definition import Step, StepBuilder

_T = TypeVar("_T")

__all__ = [
    "LoadedStep",
    "check_steps_dir",
    "discover_step_files",
    "generate_step_id",
    "is_step_file",
    "load_step_file",
    "load_steps",
]

logger = logging.getLogger("motia.loader")

_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "venv"})


#: Motia's namespace for step ids, so ids match those upstream tooling computes for the same path.
_STEP_NAMESPACE = uuid.UUID("7f1c3ff2-9b00-4d0a-bdd7-efb8bca49d4f")


def generate_step_id(path: str) -> str:
    """A stable id for the step file at ``path``: a UUID derived from the path (uuid5), as Motia's."""
    return str(uuid.uuid5(_STEP_NAMESPACE, path))


@dataclass(frozen=True, slots=True)
class LoadedStep:
    """A step, the file it came from and the files its ``include_files`` names (resolved, existing)."""

    step: Step
    path: Path
    include_files: tuple[Path, ...] = field(default=())


def is_step_file(name: str) -> bool:
    """``True`` for ``*_step.py`` (Motia's Python convention) and ``*.step.py``."""
    return name.endswith(("_step.py", ".step.py")) and name not in ("_step.py", ".step.py")


def discover_step_files(directory: Path) -> list[Path]:
    """Step files under ``directory``, recursively, in a stable (sorted) order; hidden dirs skipped."""
    if not directory.is_dir():
        raise StepLoadError(f"steps directory {directory} does not exist (use --dir to point at your steps)")
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        found.extend(Path(root) / f for f in sorted(files) if is_step_file(f))
    return found


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def module_name(path: Path) -> str:
    """A module name unique to the file: readable, plus a digest of the absolute path, because the
    readable part alone is not unique (``orders/create_step.py`` and ``orders_create_step.py`` both read
    ``orders_create_step_py``) and a second import under one name would replace the first."""
    resolved = str(path.resolve())
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = re.sub(r"\W", "_", resolved.lstrip("/"))
    return f"motia_steps.{readable}_{digest}"


def _where(exc: BaseException, path: Path) -> str:
    """``:LINE`` of the deepest traceback frame inside ``path``, to point at the failing line."""
    line = ""
    resolved = str(path.resolve())
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == resolved and frame.lineno is not None:
            line = f":{frame.lineno}"
    if isinstance(exc, SyntaxError) and exc.lineno and exc.filename == resolved:
        line = f":{exc.lineno}"
    return line


def load_step_file(path: Path) -> list[Step]:
    """Import one step file and return the steps it declares (possibly none)."""
    return import_file(path, lambda module: _collect(module, display_path(path)))


def import_file(path: Path, collect: Callable[[ModuleType], _T]) -> _T:
    """Import the file at ``path`` as its own module and return ``collect(module)``; any problem (the
    import or ``collect`` failing) raises :class:`StepLoadError` naming the file (and line), and leaves
    no half-imported module behind. Step and stream files are loaded alike."""
    shown = display_path(path)
    name = module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StepLoadError(f"{shown}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before running so dataclasses and pydantic models in the file can resolve their module.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        return collect(module)
    except StepLoadError:
        sys.modules.pop(name, None)
        raise
    except ConfigError as exc:
        sys.modules.pop(name, None)
        raise StepLoadError(f"{shown}{_where(exc, path)}: {exc}") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise StepLoadError(f"{shown}{_where(exc, path)}: failed to import: {type(exc).__name__}: {exc}") from exc


def _collect(module: ModuleType, shown: str) -> list[Step]:
    steps: list[Step] = []
    for attr, value in vars(module).items():
        if isinstance(value, Step) and not any(value is s for s in steps):
            steps.append(value)
        elif isinstance(value, StepBuilder):
            raise StepLoadError(
                f"{shown}: {attr} = step(...) has no handler; finish it with .handle(fn) or use it as a decorator"
            )
    config = getattr(module, "config", None)
    # Module style only when the file built no Step itself (``default = step(config, handler)`` is common).
    if isinstance(config, dict) and not steps:
        handler = getattr(module, "handler", None)
        if handler is None:
            raise StepLoadError(f"{shown}: has a module-level `config` but no `handler` function")
        try:
            steps.append(Step(config, handler))
        except ConfigError as exc:
            raise StepLoadError(f"{shown}: {exc}") from exc
    return steps


def included_files(step: Step, path: Path) -> tuple[Path, ...]:
    """The files ``step``'s ``include_files`` names, relative to its file ``path`` (glob patterns allowed);
    ``StepLoadError`` when one names nothing."""
    found: list[Path] = []
    for entry in step.config.include_files:
        if any(c in entry for c in "*?["):
            matches = sorted(p for p in path.parent.glob(entry) if p.is_file())
        else:
            candidate = path.parent / entry
            matches = [candidate] if candidate.is_file() else []
        if not matches:
            raise StepLoadError(
                f"{display_path(path)}: step {step.name!r} includes {entry!r}, but there is no such file "
                f"(include_files are relative to the step file: {display_path(path.parent)})"
            )
        found.extend(p.resolve() for p in matches)
    return tuple(found)


def load_steps(directory: str | os.PathLike[str]) -> list[LoadedStep]:
    """Load every step under ``directory``; raise ``StepLoadError`` naming the file(s) on the first problem.

    Checks across files: step names are unique, and no two HTTP triggers serve the same method and path
    (``/a/:id`` and ``/a/{key}`` are the same route).
    """
    loaded, problems = _load(Path(directory), stop_at_first=True)
    if problems:
        raise problems[0]
    return loaded


def check_steps_dir(directory: str | os.PathLike[str]) -> tuple[list[LoadedStep], list[StepLoadError]]:
    """Load every step under ``directory`` and return what loaded and every problem found (``motia
    check``): each file's own problem first, in file order, then names and routes declared twice."""
    return _load(Path(directory), stop_at_first=False)


def _load(root: Path, *, stop_at_first: bool) -> tuple[list[LoadedStep], list[StepLoadError]]:
    loaded: list[LoadedStep] = []
    problems: list[StepLoadError] = []
    clashes: list[StepLoadError] = []
    names: dict[str, Path] = {}
    routes: dict[tuple[str, str], tuple[Path, str]] = {}
    for path in discover_step_files(root):
        try:
            steps = load_step_file(path)
            includes = {id(step): included_files(step, path) for step in steps}
        except StepLoadError as exc:
            problems.append(exc)
            if stop_at_first:
                break
            continue
        if not steps:
            logger.warning(
                "%s declares no step (expected `default = step(...)`, @step or config + handler)", display_path(path)
            )
        for step in steps:
            if any(step is ls.step for ls in loaded):
                continue  # imported from another step file: registered once, where it was first found
            if step.name in names:
                first = display_path(names[step.name])
                clashes.append(
                    StepLoadError(f"{display_path(path)}: duplicate step name {step.name!r} (also declared in {first})")
                )
                continue
            names[step.name] = path
            for trig in step.http_triggers:
                other = routes.get(trig.route_key)
                if other is not None:
                    clashes.append(
                        StepLoadError(
                            f"{display_path(path)}: duplicate route {trig.method} {trig.path} in step {step.name!r} "
                            f"(already served by step {other[1]!r} in {display_path(other[0])})"
                        )
                    )
                else:
                    routes[trig.route_key] = (path, step.name)
            loaded.append(LoadedStep(step, path, includes[id(step)]))
        if stop_at_first and clashes:
            break
    return loaded, problems + clashes
