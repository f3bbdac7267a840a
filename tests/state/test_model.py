"""Model-based property test (SPEC 8): random operation sequences against a pure-Python reference model give
identical results, and identical errors, on every backend.

The reference model (``RefStore`` and ``apply_ops`` below) is written from SPEC 1.1-1.3 and 1.5 only. Where the
spec leaves a case open (``Ambiguous``: e.g. ``delete`` through a scalar, a list index out of range, increment
of ``null``) the model accepts either a clean error (nothing written) or a success, and then re-syncs from the
store; every other step must match exactly: return values, exception class, versions, expiries, dict key order.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from motia import InvalidUpdateError, StateConflictError, StateError, StateManager, StateValueError

MAX_EXAMPLES = int(os.environ.get("STATE_MODEL_EXAMPLES", "150"))
STEPS = 40

E = TypeVar("E", bound=BaseException)

T0 = 1_700_000_000.0


def dumps(value: Any) -> str:
    return json.dumps(value)


# --------------------------------------------------------------------------------------------------------------
# The reference model
# --------------------------------------------------------------------------------------------------------------


class OpError(Exception):
    """The op at ``index`` must raise InvalidUpdateError."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class Ambiguous(Exception):
    """The spec does not decide this case."""


MISSING = object()


def split_path(path: Any) -> list[Any]:
    if path is None or path == "":
        return []
    if isinstance(path, list):
        return list(path)
    return path.split(".")


def list_index(seg: Any, lst: list[Any], index: int) -> int:
    """Index of a list segment; OpError for a non-integer, Ambiguous when out of range."""
    if isinstance(seg, int) and not isinstance(seg, bool):
        i = seg
    elif isinstance(seg, str) and seg.isdigit() and seg.isascii():
        i = int(seg)
    else:
        raise OpError(index)
    if not 0 <= i < len(lst):
        raise Ambiguous
    return i


def walk_create(node: Any, segs: list[Any], index: int) -> Any:
    """Walks to the container of the last segment, creating missing objects (set/increment/merge/append)."""
    for seg in segs:
        if isinstance(node, dict):
            if seg not in node:
                node[seg] = {}
            node = node[seg]
        elif isinstance(node, list):
            node = node[list_index(seg, node, index)]
        else:
            raise OpError(index)
    return node


def child(parent: Any, seg: Any, index: int) -> Any:
    if isinstance(parent, dict):
        return parent.get(seg, MISSING)
    if isinstance(parent, list):
        return parent[list_index(seg, parent, index)]
    raise OpError(index)


def put(parent: Any, seg: Any, value: Any, index: int) -> None:
    if isinstance(parent, dict):
        parent[seg] = value
    elif isinstance(parent, list):
        parent[list_index(seg, parent, index)] = value
    else:
        raise OpError(index)


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def apply_ops(root: Any, ops: list[Any]) -> Any:
    """Applies update ops to a copy of ``root`` ({} for a missing key) per SPEC 1.2."""
    root = copy.deepcopy(root)
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("type"), str):
            raise OpError(i)
        kind = op["type"]
        segs = split_path(op.get("path"))
        if kind == "set":
            value = copy.deepcopy(op["value"])
            if not segs:
                root = value
            else:
                put(walk_create(root, segs[:-1], i), segs[-1], value, i)
        elif kind in ("delete", "remove"):
            node = root
            for seg in segs[:-1]:
                if isinstance(node, dict):
                    if seg not in node:
                        break
                    node = node[seg]
                else:
                    raise Ambiguous
            else:
                if isinstance(node, dict):
                    node.pop(segs[-1], None)
                else:
                    raise Ambiguous
        elif kind in ("increment", "decrement"):
            by = op["value"] if "value" in op else op.get("by")
            if not is_number(by):
                raise OpError(i)
            parent = walk_create(root, segs[:-1], i)
            current = child(parent, segs[-1], i)
            if current is MISSING:
                current = 0
            elif current is None:
                raise Ambiguous
            elif not is_number(current):
                raise OpError(i)
            put(parent, segs[-1], current + by if kind == "increment" else current - by, i)
        elif kind == "merge":
            value = op["value"]
            if not isinstance(value, dict):
                raise OpError(i)
            if not segs:
                target = root
            else:
                parent = walk_create(root, segs[:-1], i)
                target = child(parent, segs[-1], i)
                if target is MISSING:
                    target = {}
                    put(parent, segs[-1], target, i)
            if not isinstance(target, dict):
                raise OpError(i)
            target.update(copy.deepcopy(value))
        elif kind == "append":
            parent = walk_create(root, segs[:-1], i)
            target = child(parent, segs[-1], i)
            if target is MISSING:
                target = []
                put(parent, segs[-1], target, i)
            elif target is None:
                raise Ambiguous
            if not isinstance(target, list):
                raise OpError(i)
            target.append(copy.deepcopy(op["value"]))
        else:
            raise OpError(i)
    return root


def static_error_index(ops: list[Any]) -> int | None:
    """Index of the first op that is malformed on its own, whatever the stored value (bad shape, unknown type,
    non-number amount, non-object merge value). An implementation may validate every op before applying any,
    so it may report this op even when an earlier op fails only when applied."""
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("type"), str):
            return i
        kind = op["type"]
        if kind not in ("set", "delete", "remove", "increment", "decrement", "merge", "append"):
            return i
        if kind in ("increment", "decrement") and not is_number(op["value"] if "value" in op else op.get("by")):
            return i
        if kind == "merge" and not isinstance(op.get("value"), dict):
            return i
    return None


def json_ok(value: Any) -> bool:
    """Whether the value is JSON per SPEC 1.3 (the generator only produces these shapes)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class Rec:
    value: Any
    version: int
    expires_at: float | None


class RefStore:
    def __init__(self) -> None:
        self.now = T0
        self.data: dict[str, dict[str, Rec]] = {}
        # expired keys the store may have dropped lazily already (so purge_expired may not count them)
        self.maybe_gone: set[tuple[str, str]] = set()

    # -- helpers
    def alive(self, rec: Rec | None) -> bool:
        return rec is not None and (rec.expires_at is None or self.now < rec.expires_at)

    def live(self, scope: str, key: str) -> Rec | None:
        rec = self.data.get(scope, {}).get(key)
        return rec if self.alive(rec) else None

    def version(self, scope: str, key: str) -> int:
        rec = self.live(scope, key)
        return rec.version if rec else 0

    def touch(self) -> None:
        """Any call may remove expired keys (lazily or in the background): they become 'maybe gone', so
        purge_expired may or may not count them."""
        for s, keys in self.data.items():
            for k, rec in keys.items():
                if not self.alive(rec):
                    self.maybe_gone.add((s, k))

    def drop(self, scope: str, key: str) -> None:
        """delete/clear: a live key is gone for sure; an expired one may still be there for purge_expired."""
        rec = self.data.get(scope, {}).pop(key, None)
        if rec is not None and not self.alive(rec):
            self.maybe_gone.add((scope, key))
        if scope in self.data and not self.data[scope]:
            del self.data[scope]

    def write(self, scope: str, key: str, value: Any, expires_at: float | None) -> Rec:
        version = self.version(scope, key) + 1
        self.maybe_gone.discard((scope, key))
        rec = Rec(copy.deepcopy(value), version, expires_at)
        self.data.setdefault(scope, {})[key] = rec
        return rec

    # -- reads
    def live_items(self, scope: str) -> list[tuple[str, Rec]]:
        return sorted((k, r) for k, r in self.data.get(scope, {}).items() if self.alive(r))

    def groups(self) -> list[str]:
        return sorted(s for s in self.data if self.live_items(s))

    def expired(self) -> list[tuple[str, str]]:
        return [(s, k) for s, keys in self.data.items() for k, r in keys.items() if not self.alive(r)]


# --------------------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------------------

VALID_SCOPES = ["s", "t", "a", "a:b", "😀"]
VALID_KEYS = ["k", "k2", "b:c", "c", "é", "a\x00", "😀", "K"]
scopes = st.sampled_from(VALID_SCOPES)
keys = st.sampled_from(VALID_KEYS)
bad_names = st.sampled_from(["", 5, None, "x\ud800"])

dict_keys = st.sampled_from(["a", "b", "c", "l", "n", "x.y", "0"]) | st.text(max_size=3)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(dict_keys, inner, max_size=3),
    max_leaves=8,
)
bad_values = st.sampled_from([math.nan, math.inf, {1: "a"}, {"a": {1, 2}}, b"x", ["ok", float("-inf")]])

any_path = st.sampled_from(["a", "b", "a.b", "a.b.c", "l", "l.0", "l.1", "n", "x.y", ["x.y"], ["x.y", "z"], ["a", "b"]])
root_path = st.sampled_from([None, "", "a", "a.b", "l.0", ["x.y"]])
numbers = st.integers(-5, 5) | st.sampled_from([0.5, 1.5, -0.25])


@st.composite
def ops_strategy(draw: st.DrawFn) -> dict[str, Any] | str:
    # mostly valid ops (errors still come from paths meeting the wrong types), a few malformed ones
    kind = draw(
        st.sampled_from(
            ["set"] * 3
            + ["merge"] * 3
            + ["increment"] * 3
            + ["decrement", "delete", "remove"]
            + ["append"] * 2
            + ["bad"]
        )
    )
    if kind == "set":
        op: dict[str, Any] = {"type": "set", "value": draw(json_values)}
        path = draw(root_path)
        if path is not None:
            op["path"] = path
        return op
    if kind in ("delete", "remove"):
        return {"type": kind, "path": draw(any_path)}
    if kind in ("increment", "decrement"):
        amount: Any = draw(st.sampled_from(["good"] * 12 + ["1", True, None]))
        if amount == "good":
            amount = draw(numbers)
        return {"type": kind, "path": draw(any_path), draw(st.sampled_from(["value", "by"])): amount}
    if kind == "merge":
        value = draw(st.dictionaries(dict_keys, json_values, min_size=1, max_size=4))
        op = {"type": "merge", "value": value if draw(st.integers(0, 9)) else [1]}
        path = draw(root_path)
        if path is not None:
            op["path"] = path
        return op
    if kind == "append":
        return {"type": "append", "path": draw(any_path), "value": draw(json_values)}
    malformed: list[dict[str, Any] | str] = [{"type": "bogus", "path": "a"}, {"path": "a", "value": 1}, "set"]
    return draw(st.sampled_from(malformed))


op_lists = st.lists(ops_strategy(), min_size=1, max_size=4)
ttls = st.sampled_from([None, None, None, 1.25, 4.75])  # never lands on an integer tick: no boundary cases
bad_ttls = st.sampled_from([0, -1])
cas_choices = st.sampled_from([None, None, None, None, "same", "other", 0])  # if_version: none, right, wrong, absent


# --------------------------------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------------------------------


class StateMachine(RuleBasedStateMachine):
    def __init__(self, url: str, clock: Any) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.clock = clock
        self.model = RefStore()
        self.sm: StateManager = self.run(self._open(url))

    async def _open(self, url: str) -> StateManager:
        return StateManager.from_url(url, clock=self.clock)

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def teardown(self) -> None:
        try:
            self.run(self.sm.aclose())
        finally:
            self.runner.close()

    def expect_error(self, coro: Any, *classes: type[E]) -> E:
        try:
            result = self.run(coro)
        except StateError as exc:
            assert isinstance(exc, classes), f"expected {classes}, got {exc!r}"
            return exc
        raise AssertionError(f"expected {classes}, got result {result!r}")

    def conflict_expected(self, scope: str, key: str, if_version: int | None) -> bool:
        return if_version is not None and if_version != self.model.version(scope, key)

    # -- writes
    @rule(scope=scopes, key=keys, value=json_values, ttl=ttls, cas=cas_choices)
    def do_set(self, scope, key, value, ttl, cas):
        m = self.model
        if_version = self.pick_version(scope, key, cas)
        self.model.touch()
        if self.conflict_expected(scope, key, if_version):
            exc = self.expect_error(self.sm.set(scope, key, value, ttl=ttl, if_version=if_version), StateConflictError)
            assert (exc.expected, exc.actual) == (if_version, m.version(scope, key))
            return
        old = m.live(scope, key)
        result = self.run(self.sm.set(scope, key, value, ttl=ttl, if_version=if_version))
        rec = m.write(scope, key, value, None if ttl is None else m.now + ttl)
        assert dumps(result.old_value) == dumps(old.value if old else None)
        assert dumps(result.new_value) == dumps(value)
        assert result.version == rec.version

    @rule(scope=scopes, key=keys, value=bad_values)
    def do_set_bad_value(self, scope, key, value):
        self.model.touch()
        self.expect_error(self.sm.set(scope, key, value), StateValueError)

    @rule(name=bad_names, value=json_values, which=st.booleans())
    def do_set_bad_name(self, name, value, which):
        scope, key = (name, "k") if which else ("s", name)
        self.expect_error(self.sm.set(scope, key, value), StateValueError)

    @rule(scope=scopes, key=keys, ttl=bad_ttls)
    def do_set_bad_ttl(self, scope, key, ttl):
        self.model.touch()
        self.expect_error(self.sm.set(scope, key, 1, ttl=ttl), StateValueError)

    @rule(scope=scopes, key=keys, ttl=ttls, cas=cas_choices)
    def do_update_empty(self, scope, key, ttl, cas):
        self.do_update(scope, key, [], ttl, cas)

    @rule(scope=scopes, key=keys, ops=op_lists, ttl=ttls, cas=cas_choices)
    def do_update_rule(self, scope, key, ops, ttl, cas):
        self.do_update(scope, key, ops, ttl, cas)

    @rule(scope=scopes, key=keys, ops=op_lists)
    def do_update_more(self, scope, key, ops):  # updates are the richest operation: give them more steps
        self.do_update(scope, key, ops, None, None)

    def do_update(self, scope, key, ops, ttl, cas):
        m = self.model
        if_version = self.pick_version(scope, key, cas)
        if not ops:
            ttl = None  # an empty update writes nothing; whether it would set a TTL is not specified
        m.touch()
        old = m.live(scope, key)

        def call() -> Any:
            return self.sm.update(scope, key, ops, ttl=ttl, if_version=if_version)

        try:
            new_value = apply_ops(old.value if old else {}, ops) if ops else MISSING
            problem: type[Exception] | None = None
        except OpError as err:
            problem, op_index = OpError, err.index
        except Ambiguous:
            problem = Ambiguous
        conflict = self.conflict_expected(scope, key, if_version)
        event(f"update: {'conflict' if conflict else problem.__name__ if problem else 'ok' if ops else 'empty'}")
        if conflict and ops:
            # a conflict and a bad op in one call: either error is right, and nothing is written
            classes = (StateConflictError,) + ((InvalidUpdateError,) if problem else ())
            exc = self.expect_error(call(), *classes)
            if isinstance(exc, StateConflictError):
                assert (exc.expected, exc.actual) == (if_version, m.version(scope, key))
            return
        if problem is OpError:
            exc = self.expect_error(call(), InvalidUpdateError)
            assert exc.index in (op_index, static_error_index(ops)), f"{exc!r} for ops {ops!r}"
            return
        if problem is Ambiguous:
            try:
                result = self.run(call())
            except InvalidUpdateError:
                return  # the invariant checks that nothing was written
            entry = self.run(self.sm.get_entry(scope, key))
            assert result.version == (old.version if old else 0) + 1
            assert dumps(result.new_value) == dumps(entry.value)
            m.write(scope, key, entry.value, entry.expires_at)
            return
        if not ops:
            try:
                result = self.run(call())
            except StateConflictError as exc:  # if_version with an empty update: a conflict is fine too
                assert conflict
                assert (exc.expected, exc.actual) == (if_version, m.version(scope, key))
                return
            assert dumps(result.old_value) == dumps(old.value if old else None)
            assert dumps(result.new_value) == dumps(old.value if old else None)
            assert result.version == (old.version if old else 0)
            return
        if not json_ok(new_value):  # pragma: no cover - the generator only produces JSON
            raise AssertionError(new_value)
        result = self.run(call())
        expires_at = (old.expires_at if old else None) if ttl is None else m.now + ttl
        rec = m.write(scope, key, new_value, expires_at)
        assert dumps(result.old_value) == dumps(old.value if old else None), ops
        assert dumps(result.new_value) == dumps(new_value), ops
        assert result.version == rec.version

    @rule(name=bad_names, which=st.booleans())
    def do_update_bad_name(self, name, which):
        scope, key = (name, "k") if which else ("s", name)
        self.expect_error(self.sm.update(scope, key, [{"type": "set", "path": "a", "value": 1}]), StateValueError)

    @rule(scope=scopes, key=keys, cas=cas_choices)
    def do_delete(self, scope, key, cas):
        m = self.model
        if_version = self.pick_version(scope, key, cas)
        m.touch()
        if self.conflict_expected(scope, key, if_version):
            exc = self.expect_error(self.sm.delete(scope, key, if_version=if_version), StateConflictError)
            assert (exc.expected, exc.actual) == (if_version, m.version(scope, key))
            return
        old = m.live(scope, key)
        result = self.run(self.sm.delete(scope, key, if_version=if_version))
        assert dumps(result) == dumps(old.value if old else None)
        m.drop(scope, key)

    @rule(scope=scopes)
    def do_clear(self, scope):
        self.model.touch()
        assert self.run(self.sm.clear(scope)) is None
        for key in list(self.model.data.get(scope, {})):
            self.model.drop(scope, key)

    @rule(seconds=st.sampled_from([1.0, 3.0]))
    def do_tick(self, seconds):
        self.clock.advance(seconds)
        self.model.now += seconds

    @rule()
    def do_purge_expired(self):
        m = self.model
        expired = m.expired()
        certain = [sk for sk in expired if sk not in m.maybe_gone]
        possible = set(expired) | m.maybe_gone
        removed = self.run(self.sm.purge_expired())
        assert len(certain) <= removed <= len(possible), (removed, certain, possible)
        for scope, key in expired:
            del m.data[scope][key]
            if not m.data[scope]:
                del m.data[scope]
        m.maybe_gone.clear()

    # -- reads
    @rule(scope=scopes, key=keys)
    def do_get(self, scope, key):
        self.model.touch()
        rec = self.model.live(scope, key)
        assert dumps(self.run(self.sm.get(scope, key))) == dumps(rec.value if rec else None)

    @rule(scope=scopes, key=keys)
    def do_get_entry(self, scope, key):
        self.model.touch()
        rec = self.model.live(scope, key)
        entry = self.run(self.sm.get_entry(scope, key))
        if rec is None:
            assert entry is None
        else:
            assert entry.key == key
            assert dumps(entry.value) == dumps(rec.value)
            assert entry.version == rec.version
            assert entry.expires_at == pytest.approx(rec.expires_at)

    @rule(name=bad_names, which=st.booleans())
    def do_get_bad_name(self, name, which):
        scope, key = (name, "k") if which else ("s", name)
        self.expect_error(self.sm.get(scope, key), StateValueError)

    @rule(scope=scopes)
    def do_list(self, scope):
        self.model.touch()
        expected = [r.value for _, r in self.model.live_items(scope)]
        assert dumps(self.run(self.sm.list(scope))) == dumps(expected)

    @rule(
        scope=scopes,
        prefix=st.sampled_from([None, "", "k", "a", "😀", "b:", "K"]),
        after=st.sampled_from([None, "", "a", "k", "k2", "é", "b:c"]),
        limit=st.sampled_from([None, 1, 2, 5]),
    )
    def do_items(self, scope, prefix, after, limit):
        self.model.touch()
        expected = [
            (k, dumps(r.value), r.version)
            for k, r in self.model.live_items(scope)
            if (prefix is None or k.startswith(prefix)) and (after is None or k > after)
        ][: limit if limit is not None else None]
        entries = self.run(self.sm.items(scope, prefix=prefix, after=after, limit=limit))
        assert [(e.key, dumps(e.value), e.version) for e in entries] == expected
        assert self.run(self.sm.keys(scope, prefix=prefix, after=after, limit=limit)) == [k for k, _, _ in expected]

    @rule(scope=scopes)
    def do_count(self, scope):
        self.model.touch()
        assert self.run(self.sm.count(scope)) == len(self.model.live_items(scope))

    @rule()
    def do_list_groups(self):
        self.model.touch()
        assert self.run(self.sm.list_groups()) == self.model.groups()

    # -- helpers and invariant
    def pick_version(self, scope: str, key: str, cas: Any) -> int | None:
        if cas is None:
            return None
        if cas == "same":
            return self.model.version(scope, key)
        if cas == "other":
            return self.model.version(scope, key) + 1
        return cas  # 0: only if absent

    @invariant()
    def store_matches_model(self):
        """After every step the whole visible store equals the model (also proves failed calls wrote nothing)."""
        m = self.model
        m.touch()
        groups = self.run(self.sm.list_groups())
        assert groups == m.groups()
        for scope in groups:
            entries = self.run(self.sm.items(scope))
            got = [(e.key, dumps(e.value), e.version, e.expires_at) for e in entries]
            want = [(k, dumps(r.value), r.version, r.expires_at) for k, r in m.live_items(scope)]
            assert got == want


def test_random_operation_sequences_match_the_model(fresh_url_factory, clock_factory):
    # every example gets a fresh store and a fresh fake clock
    run_state_machine_as_test(
        lambda: StateMachine(fresh_url_factory(), clock_factory(T0)),  # type: ignore[arg-type]
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_reference_model_sanity():
    """The reference model itself follows SPEC 1.2 on a few hand-checked cases."""
    assert apply_ops({}, [{"type": "set", "path": "a.b", "value": 1}]) == {"a": {"b": 1}}
    assert apply_ops({"n": 1}, [{"type": "increment", "path": "n", "by": 2}]) == {"n": 3}
    assert apply_ops({"l": [{"q": 1}]}, [{"type": "increment", "path": "l.0.q", "value": 1}]) == {"l": [{"q": 2}]}
    assert apply_ops({}, [{"type": "set", "path": ["x.y"], "value": 1}]) == {"x.y": 1}
    assert apply_ops({"a": 1}, [{"type": "merge", "value": {"b": 2}}]) == {"a": 1, "b": 2}
    assert apply_ops({}, [{"type": "append", "path": "h", "value": 1}]) == {"h": [1]}
    assert apply_ops({"a": 1}, [{"type": "delete", "path": "zz.y"}]) == {"a": 1}
    with pytest.raises(OpError) as excinfo:
        apply_ops(
            {"n": "x"}, [{"type": "set", "path": "a", "value": 1}, {"type": "increment", "path": "n", "value": 1}]
        )
    assert excinfo.value.index == 1
    with pytest.raises(OpError):
        apply_ops({"n": True}, [{"type": "increment", "path": "n", "value": 1}])
    with pytest.raises(Ambiguous):
        apply_ops({"a": 5}, [{"type": "delete", "path": "a.b"}])
