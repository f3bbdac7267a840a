"""Validation and JSON encoding of scopes, keys and values, done before any backend is touched.

Every value goes through :func:`to_json` then :func:`encode`, so every backend stores the same bytes and
rejects the same inputs. orjson alone is not enough: it writes NaN as ``null`` and serialises
``datetime``/``UUID``/``Enum`` natively, which would silently change what the caller stored.
"""

from __future__ import annotations

import dataclasses
import json
import math

import orjson

from motia.exceptions import StateValueError
from motia.state.types import JSON

MAX_SCOPE_LENGTH = 256
#: Scopes the runtime keeps its own records in (``__motia.idempotency``): state triggers never see them.
INTERNAL_SCOPE_PREFIX = "__motia."
MAX_KEY_LENGTH = 1024
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
#: Deeper nesting than this is rejected; it also turns a reference cycle into a clear error.
MAX_DEPTH = 200

#: Types that need no check at all (floats do: NaN and infinity are not JSON). A set: a type is found by its hash,
#: where a tuple compares it with each member in turn (issue 15).
_PLAIN = frozenset((str, int, bool, type(None)))
#: orjson's encoder, bound once: every write encodes its value (issue 15).
_orjson_dumps = orjson.dumps


def check_name(kind: str, name: object, max_length: int) -> str:
    """Return ``name`` if it is a usable scope or key, else raise :class:`StateValueError`."""
    if not isinstance(name, str):
        raise StateValueError(f"{kind} must be a str, not {type(name).__name__}")
    if not name:
        raise StateValueError(f"{kind} must not be empty")
    if len(name) > max_length:
        raise StateValueError(f"{kind} is {len(name)} characters long; the limit is {max_length}")
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise StateValueError(f"{kind} contains a lone surrogate and cannot be stored as UTF-8") from None
    return name


def check_scope(scope: object) -> str:
    return check_name("scope", scope, MAX_SCOPE_LENGTH)


def check_key(key: object) -> str:
    return check_name("key", key, MAX_KEY_LENGTH)


def to_json(value: object) -> JSON:
    """Return ``value`` as plain JSON data, or raise :class:`StateValueError` naming where it is not.

    Pydantic models and dataclasses become their JSON form. The result may share structure with the
    input; callers encode it straight away.
    """
    return _to_json(value, "value", 0)


def _to_json(value: object, where: str, depth: int) -> JSON:
    """``to_json`` at ``where`` (a path such as ``value.items[2]``; empty: not tracked, see :func:`encode_value`)."""
    if depth > MAX_DEPTH:
        raise StateValueError(f"{where}: nested deeper than {MAX_DEPTH} levels (or contains a reference cycle)")
    kind = type(value)
    if kind is dict:  # first: what a write stores is nearly always an object
        converted_dict: dict[str, JSON] | None = None
        for name, item in value.items():  # type: ignore[attr-defined]
            if type(name) is not str:
                raise StateValueError(f"{where}: dict keys must be str, found {type(name).__name__} {name!r}")
            of = type(item)
            if of in _PLAIN or ((of is dict or of is list) and not item and depth < MAX_DEPTH):
                continue  # nothing to check or convert (an empty object or list, as deep as allowed: no call)
            converted = _to_json(item, where and f"{where}.{name}", depth + 1)
            if converted is not item:
                if converted_dict is None:
                    converted_dict = dict(value)  # type: ignore[call-overload]
                converted_dict[name] = converted
        return value if converted_dict is None else converted_dict
    if kind is str or kind is bool or kind is int or value is None:
        return value
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise StateValueError(f"{where}: {value!r} is not valid JSON (only finite numbers are)")
        return value
    if kind is list or kind is tuple:
        converted_list: list[JSON] | None = None
        for index, item in enumerate(value):  # type: ignore[arg-type]
            of = type(item)
            if of in _PLAIN or ((of is dict or of is list) and not item and depth < MAX_DEPTH):
                continue
            converted = _to_json(item, where and f"{where}[{index}]", depth + 1)
            if converted is not item:
                if converted_list is None:
                    converted_list = list(value)  # type: ignore[call-overload]
                converted_list[index] = converted
        return value if converted_list is None else converted_list
    return _convert(value, where, depth)


def _convert(value: object, where: str, depth: int) -> JSON:
    """Handle the less common cases: models, dataclasses, subclasses of JSON types."""
    model_dump = getattr(value, "model_dump", None)
    if model_dump is not None and hasattr(type(value), "model_fields"):
        return _to_json(model_dump(mode="json"), where, depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_json(dataclasses.asdict(value), where, depth + 1)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # IntEnum and other int subclasses store as the plain number
        return int(value)
    if isinstance(value, float):
        return _to_json(float(value), where, depth)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return _to_json(dict(value), where, depth)
    if isinstance(value, list | tuple):
        return _to_json(list(value), where, depth)
    raise StateValueError(
        f"{where}: {type(value).__name__} is not JSON (store a str, number, bool, None, list or dict)"
    )


def dumps(value: JSON) -> bytes:
    """Encode already-validated JSON data (no size limit)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # lone surrogates, ints beyond 64 bits
        if "64-bit" not in str(exc):
            raise StateValueError(f"value cannot be stored as JSON: {exc}") from None
    # orjson stops at 64 bits; JSON and Python ints do not. The rare big int takes the slow road.
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:  # an int past sys.get_int_max_str_digits() (4,300 digits by default)
        raise StateValueError(f"value cannot be stored as JSON: {exc}") from None


def encode(value: JSON, max_bytes: int) -> bytes:
    """Encode already-validated JSON data, enforcing the size limit."""
    try:
        data = _orjson_dumps(value)  # dumps' first try, without its call (every update encodes its value)
    except orjson.JSONEncodeError:
        data = dumps(value)  # raises as it says, or takes the slow road for a big int
    if len(data) > max_bytes:
        raise StateValueError(f"value is {len(data)} bytes encoded; the limit is max_value_bytes={max_bytes}")
    return data


def encode_value(value: object, max_bytes: int) -> bytes:
    """Validate and encode a caller's value in one step (what ``encode(to_json(value), max_bytes)`` does, with
    the calls between folded in: every write makes it; issue 15)."""
    try:
        # Without a location (``where`` empty): nested values then cost no string formatting. Only to word
        # an error is the value walked again, with its location.
        checked = _to_json(value, "", 0)
    except StateValueError:
        _to_json(value, "value", 0)
        raise
    try:
        data = _orjson_dumps(checked)
    except orjson.JSONEncodeError:
        data = dumps(checked)  # raises as it says, or takes the slow road for a big int
    if len(data) > max_bytes:
        raise StateValueError(f"value is {len(data)} bytes encoded; the limit is max_value_bytes={max_bytes}")
    return data


#: 20+ digits in a row may be an int beyond 64 bits, which orjson would read as a float. Found by mapping
#: every digit to ``0`` and every other byte to a space, then searching for 20 zeros: a C-speed pass several
#: times faster than the regex ``\d{20,}`` (which cost more than orjson's decode itself; issue 15).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 20
#: The pre-check: a run of 20 digits holds 5 bytes in a row of every 4th byte (the first multiple of 4 in it is
#: at most 3 bytes in, and 4 more follow within 16), so ``data[::4]`` without 5 digits in a row holds none. A
#: quarter of the bytes to map, and a state event's timestamp (18 characters with its ``.``) never passes it.
#: Only what passes gets the full check, so the answer is the same, for about half the instructions (issue 15).
_EVERY_FOURTH = slice(None, None, 4)
_SAMPLED_RUN = b"0" * 5


def _not_json(constant: str) -> JSON:
    raise ValueError(f"{constant} is not valid JSON (only finite numbers are)")


def decode(data: bytes) -> JSON:
    """Decode JSON bytes (stored values, request bodies) into a fresh object; raise ``ValueError`` for
    anything that is not strict JSON.

    orjson is exact up to 64-bit ints; a value that might hold a bigger one (a false positive, such as
    a long digit string, only costs speed) is read by the stdlib, which keeps every int exact. Both
    paths accept the same language (issue 11, #6): the stdlib's extensions ``NaN``/``Infinity`` are
    refused as orjson refuses them, and nesting too deep for its recursion is a ``ValueError`` like
    orjson's depth limit, never a ``RecursionError``.
    """
    # ``partition``, not ``in``: ``bytes.__contains__`` first tries its argument as an int, raising and clearing a
    # TypeError for a bytes one, and ``find`` parses its arguments with a format string each call (issue 15).
    if (
        data[_EVERY_FOURTH].translate(_DIGITS_ONLY).partition(_SAMPLED_RUN)[1]
        and data.translate(_DIGITS_ONLY).partition(_LONG_RUN)[1]
    ):
        try:
            return json.loads(data, parse_constant=_not_json)
        except RecursionError:
            raise ValueError("JSON nested too deeply to decode") from None
    return orjson.loads(data)


def check_ttl(ttl: object) -> float | None:
    """Return the TTL in seconds as a float, or ``None``; raise for anything but a positive finite number."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise StateValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    return float(ttl)


def check_version(if_version: object) -> int | None:
    """Return ``if_version`` if it is ``None`` or a non-negative int, else raise."""
    if if_version is None:
        return None
    if isinstance(if_version, bool) or not isinstance(if_version, int) or if_version < 0:
        raise StateValueError(f"if_version must be a non-negative int (0 = only if absent), not {if_version!r}")
    return if_version


def check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise StateValueError(f"limit must be a non-negative int or None, not {limit!r}")
    return limit


def check_optional_str(kind: str, text: object) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise StateValueError(f"{kind} must be a str or None, not {type(text).__name__}")
    return text


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix`` (``None``: no bound).

    Lets a backend turn "starts with" into a key range an index can seek, so a page costs the page.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            code += 1
            if 0xD800 <= code <= 0xDFFF:  # skip the surrogate block, which no stored key contains
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None
