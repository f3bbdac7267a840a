"""Update operations: parsing (before any I/O) and application to a value (inside the write transaction).

Pure functions, no I/O, shared by every backend that applies updates in Python, so all backends agree on
every edge case. Upstream Motia walks top-level paths only and silently resets a non-number on increment;
here paths are nested and every inapplicable operation is an :class:`InvalidUpdateError` naming the
operation's index and path, raised before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from motia.exceptions import InvalidUpdateError, StateValueError
from motia.state.types import JSON
from motia.state.values import decode, dumps, to_json

#: A path segment: a dict key, or a list index (an int, or a str of digits when the container is a list).
Segment = str | int

_OP_NAMES = {
    "set": "set",
    "delete": "delete",
    "remove": "delete",
    "increment": "increment",
    "decrement": "increment",
    "merge": "merge",
    "append": "append",
}
_ALLOWED_FIELDS = {
    "set": {"type", "path", "value"},
    "delete": {"type", "path"},
    "increment": {"type", "path", "value", "by"},
    "merge": {"type", "path", "value"},
    "append": {"type", "path", "value"},
}


@dataclass(frozen=True, slots=True, init=False)
class Operation:
    """A validated update operation. ``decrement`` is an ``increment`` by the negated amount."""

    kind: str
    path: tuple[Segment, ...]
    index: int
    raw_path: object
    #: The operand: the amount for ``increment``; encoded JSON bytes for the others (decoded afresh at
    #: each application so two operations never share, and mutate, one object).
    operand: Any

    def __init__(self, kind: str, path: tuple[Segment, ...], index: int, raw_path: object, operand: Any = None) -> None:
        # Each field set through its slot, not the frozen class's object.__setattr__ by name: a third of the
        # cost, and every update builds one per operation (issue 15). Still frozen to everyone else.
        _SET_KIND(self, kind)
        _SET_PATH(self, path)
        _SET_INDEX(self, index)
        _SET_RAW_PATH(self, raw_path)
        _SET_OPERAND(self, operand)

    def describe(self) -> str:
        return f"update op {self.index} ({self.kind} {self.raw_path!r})"

    def error(self, problem: str) -> InvalidUpdateError:
        return InvalidUpdateError(f"{self.describe()}: {problem}", index=self.index, path=self.raw_path)

    def value(self) -> JSON:
        return decode(self.operand)


_SET_KIND: Any = vars(Operation)["kind"].__set__
_SET_PATH: Any = vars(Operation)["path"].__set__
_SET_INDEX: Any = vars(Operation)["index"].__set__
_SET_RAW_PATH: Any = vars(Operation)["raw_path"].__set__
_SET_OPERAND: Any = vars(Operation)["operand"].__set__


def parse_path(path: object) -> tuple[Segment, ...]:
    """Split a path into segments. ``None``/``""``/``[]`` is the root; ``"a.b"`` walks; a list keeps dots.

    Raises ``ValueError`` (wrapped by the caller) for anything else.
    """
    if path is None or path == "":
        return ()
    if isinstance(path, str):
        segments = path.split(".")
        if "" in segments:
            raise ValueError("empty path segment (use a list of segments for keys that are empty or contain dots)")
        return tuple(segments)
    if isinstance(path, list | tuple):
        for segment in path:
            if isinstance(segment, bool) or not isinstance(segment, str | int):
                raise ValueError(f"path segments must be str or int, not {type(segment).__name__}")
            if isinstance(segment, int) and segment < 0:
                raise ValueError(f"list index {segment} is negative")
        return tuple(path)
    raise ValueError(f"path must be a str or a list of segments, not {type(path).__name__}")


def parse_operations(operations: object) -> list[Operation]:
    """Validate the shape of every operation and normalise it; raise :class:`InvalidUpdateError` if any is bad."""
    if type(operations) is not list and not isinstance(operations, list | tuple):
        raise InvalidUpdateError(
            f"update operations must be a list of dicts, not {type(operations).__name__}", index=None, path=None
        )
    if len(operations) == 1:  # the common update: one operation, without the comprehension's frame
        return [_parse_one(0, operations[0])]
    return [_parse_one(index, raw) for index, raw in enumerate(operations)]


#: Increments already parsed, by ``(index, type, path, amount)``: an operation is immutable, so one parse serves
#: every later update that gives the same one (issue 15: parsing was an eighth of an update from many tasks, and
#: handlers give the same few increments again and again). Only the shape whose three fields are exactly a ``str``
#: type, a ``str`` path and an ``int`` amount is looked up (exact types: ``1.0`` or ``True`` equal ``1`` as keys,
#: and must not find its operation); anything else, and a first sight, is parsed in full. Cleared when full, so
#: amounts that change with every call cannot grow it without bound.
_PARSED: dict[tuple[int, str, str, int], Operation] = {}
_PARSED_MAX = 256


def _parse_one(index: int, raw: object) -> Operation:
    if type(raw) is dict and len(raw) == 3:
        op_type = raw.get("type")
        raw_path = raw.get("path")
        amount = raw.get("value")
        # three fields, these three of them present (a missing one reads None): exactly {type, path, value}
        if type(op_type) is str and type(raw_path) is str and type(amount) is int:
            cache_key = (index, op_type, raw_path, amount)
            operation = _PARSED.get(cache_key)
            if operation is None:
                operation = _parse_fully(index, raw)  # raises for a bad operation: nothing kept
                if operation.kind == "increment":  # set values change from call to call; amounts seldom do
                    if len(_PARSED) >= _PARSED_MAX:
                        _PARSED.clear()
                    _PARSED[cache_key] = operation
            return operation
    return _parse_fully(index, raw)


def _parse_fully(index: int, raw: object) -> Operation:
    if not isinstance(raw, dict):
        raise InvalidUpdateError(f"update op {index}: must be a dict, not {type(raw).__name__}", index=index)
    raw_path = raw.get("path")
    op_type = raw.get("type")
    kind = _OP_NAMES.get(op_type) if isinstance(op_type, str) else None
    if kind is None:
        known = ", ".join(sorted(_OP_NAMES))
        raise _bad(index, op_type, raw_path, f"unknown type {op_type!r}; expected one of {known}")
    if not raw.keys() <= _ALLOWED_FIELDS[kind]:
        unknown = set(raw) - _ALLOWED_FIELDS[kind]
        raise _bad(index, op_type, raw_path, f"unexpected field(s) {', '.join(sorted(map(str, unknown)))}")
    if type(raw_path) is str and raw_path and "." not in raw_path:
        path: tuple[Segment, ...] = (raw_path,)  # a top-level field (the common path): parse_path's answer, no call
    else:
        try:
            path = parse_path(raw_path)
        except ValueError as exc:
            raise _bad(index, op_type, raw_path, f"invalid path: {exc}") from None
    if kind == "delete":
        if not path:
            raise _bad(index, op_type, raw_path, "cannot delete the whole value; use delete(scope, key)")
        return Operation(kind, path, index, raw_path)
    if kind == "increment":
        if "value" in raw and "by" in raw:
            raise _bad(index, op_type, raw_path, "give 'value' or its alias 'by', not both")
        if "value" not in raw and "by" not in raw:
            raise _bad(index, op_type, raw_path, "missing the amount ('value' or 'by')")
        amount = raw["value"] if "value" in raw else raw["by"]
        # ints are always finite (and math.isfinite raises OverflowError on one beyond a float's range)
        if type(amount) is int:
            pass  # the common amount: no further check
        elif not _is_number(amount) or (isinstance(amount, float) and not math.isfinite(amount)):
            raise _bad(index, op_type, raw_path, f"the amount must be a finite number, not {amount!r}")
        return Operation(kind, path, index, raw_path, -amount if op_type == "decrement" else amount)
    if "value" not in raw:
        raise _bad(index, op_type, raw_path, "missing 'value'")
    value = raw["value"]
    try:
        encoded = dumps(to_json(value))
    except StateValueError as exc:
        raise _bad(index, op_type, raw_path, str(exc)) from None
    if kind == "merge" and not isinstance(value, dict) and not isinstance(decode(encoded), dict):
        raise _bad(index, op_type, raw_path, f"merge needs an object value, not {type(value).__name__}")
    return Operation(kind, path, index, raw_path, encoded)


def _bad(index: int, op_type: object, raw_path: object, problem: str) -> InvalidUpdateError:
    """The error of operation ``index``, worded only when there is one (not for every operation parsed)."""
    return InvalidUpdateError(f"update op {index} ({op_type!r} {raw_path!r}): {problem}", index=index, path=raw_path)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def apply_operations(document: JSON, operations: Sequence[Operation]) -> JSON:
    """Apply ``operations`` in order to ``document`` (a fresh, caller-owned copy) and return the result.

    A missing key starts as ``{}``: the caller passes that. ``None`` is a stored JSON ``null``, which
    path operations cannot enter. ``document`` may be mutated in place; on error the caller discards
    it, so all-or-nothing holds.
    """
    for op in operations:
        path = op.path
        # A number added to a top-level number field (the common update), without the calls of _apply and
        # _combine: the same answer they give, and anything else (a bool, a float result to check) takes them.
        if op.kind == "increment" and len(path) == 1 and type(document) is dict and type(name := path[0]) is str:
            current = document.get(name, 0)
            if type(current) is int and type(op.operand) is int:
                document[name] = current + op.operand
                continue
        document = _apply(document, op)
    return document


def _apply(document: JSON, op: Operation) -> JSON:
    path = op.path
    if not path:
        return _apply_at_root(document, op)
    if len(path) == 1 and type(document) is dict:  # a top-level field: nothing to walk (the common update)
        parent: Any = document
    else:
        parent = _walk_to_parent(document, op, create=op.kind != "delete")
    if parent is None:  # delete through a missing intermediate: nothing to delete
        return document
    last = op.path[-1]
    if isinstance(parent, dict):
        name = last if isinstance(last, str) else str(last)
        current = parent.get(name, _MISSING)
        result = _combine(current, op)
        if result is _DELETE:
            parent.pop(name, None)
        else:
            parent[name] = result
        return document
    position = _list_index(parent, last, op, allow_end=op.kind != "delete")
    if position is None:  # delete of an index past the end: no-op
        return document
    current = parent[position] if position < len(parent) else _MISSING
    result = _combine(current, op)
    if result is _DELETE:
        del parent[position]
    elif position == len(parent):
        parent.append(result)
    else:
        parent[position] = result
    return document


def _apply_at_root(document: JSON, op: Operation) -> JSON:
    if op.kind == "set":
        return op.value()
    return _combine(document, op)


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_MISSING: Any = _Sentinel("MISSING")
_DELETE: Any = _Sentinel("DELETE")


def _combine(current: JSON, op: Operation) -> JSON:
    """The new value at the target, given the current one (``_MISSING`` if absent)."""
    kind = op.kind
    if kind == "set":
        return op.value()
    if kind == "delete":
        return _DELETE
    if kind == "increment":
        if current is _MISSING:
            current = 0
        number = type(current)
        if number is not int and number is not float and not _is_number(current):
            raise op.error(f"cannot increment {_describe(current)}; only numbers can be incremented")
        try:
            result = current + op.operand
        except OverflowError:  # an int beyond a float's range plus a float amount
            raise op.error(f"the result of adding {op.operand!r} to {_describe(current)} is too large") from None
        if isinstance(result, float) and not math.isfinite(result):
            raise op.error(f"the result {result!r} is not a finite number")
        return result
    if kind == "merge":
        if current is _MISSING:
            current = {}
        if not isinstance(current, dict):
            raise op.error(f"cannot merge into {_describe(current)}; only objects can be merged into")
        current.update(op.value())
        return current
    # append
    if current is _MISSING:
        current = []
    if not isinstance(current, list):
        raise op.error(f"cannot append to {_describe(current)}; only lists can be appended to")
    current.append(op.value())
    return current


def _walk_to_parent(document: JSON, op: Operation, *, create: bool) -> Any:
    """Return the container that holds the last segment, creating objects on the way if ``create``."""
    node = document
    for depth, segment in enumerate(op.path[:-1]):
        if isinstance(node, dict):
            name = segment if isinstance(segment, str) else str(segment)
            child = node.get(name, _MISSING)
            if child is _MISSING:
                if not create:
                    return None
                child = {}
                node[name] = child
        elif isinstance(node, list):
            position = _list_index(node, segment, op, allow_end=False)
            if position is None:
                return None
            child = node[position]
        else:
            raise _through_error(op, depth, node)
        node = child
    if not isinstance(node, dict | list):
        raise _through_error(op, len(op.path) - 1, node)
    return node


def _through_error(op: Operation, depth: int, node: JSON) -> InvalidUpdateError:
    walked = ".".join(str(segment) for segment in op.path[:depth]) or "the value"
    return op.error(f"cannot walk through {walked!r}: it is {_describe(node)}, not an object or a list")


def _list_index(items: list[JSON], segment: Segment, op: Operation, *, allow_end: bool) -> int | None:
    """Resolve ``segment`` as an index into ``items``; ``None`` means past the end for a delete."""
    if isinstance(segment, int):
        position = segment
    elif segment.isdigit() and segment.isascii():
        position = int(segment)
    else:
        raise op.error(f"{segment!r} is not a list index (the container is a list)")
    if position < len(items) or (allow_end and position == len(items)):
        return position
    if op.kind == "delete":
        return None
    raise op.error(f"list index {position} is out of range (the list has {len(items)} items)")


def _describe(value: JSON) -> str:
    """A short description of a stored value for an error message.

    Never raises: it runs while an error is being reported, and a description that failed (an int past
    64 bits once made orjson raise ``TypeError`` here) would replace the real error and fail a whole
    group-commit batch.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a bool ({value!r})"
    if isinstance(value, str):
        return "a str"
    if isinstance(value, int):
        if value.bit_length() > 64:  # also stays clear of the 4,300-digit limit on str(int)
            return f"an int of {value.bit_length()} bits"
        return f"int {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    try:
        preview = dumps(value)[:40].decode(errors="replace")
    except (ValueError, TypeError, RecursionError):  # StateValueError is a ValueError
        preview = "(not shown)"
    return f"{type(value).__name__} {preview}"
