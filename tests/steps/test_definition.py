from __future__ import annotations

import functools

import pytest

from motia import ConfigError, Step, http, step
from motia.steps.definition import StepBuilder, handler_arity, is_async_callable

CONFIG = {"name": "get-session", "triggers": [http("GET", "/session/:id")]}


async def handler(input, ctx):
    return {"status": 200, "body": input}


def test_three_declaration_styles_build_equal_steps():
    a = step(CONFIG, handler)
    b = step(CONFIG).handle(handler)
    c = step(CONFIG)(handler)
    assert isinstance(a, Step)
    assert a == b == c
    assert a.name == "get-session"
    assert a.triggers == (http("GET", "/session/:id"),)
    assert a.http_triggers == [http("GET", "/session/:id")]
    assert a.cron_triggers == []
    assert repr(a) == "Step(name='get-session', triggers=[http('GET', '/session/:id')], handler=handler)"


def test_decorated_function_stays_callable_and_named():
    @step({"name": "echo"})
    def echo(input):
        return input

    assert isinstance(echo, Step)
    assert echo(5) == 5
    assert echo.__name__ == "echo"  # type: ignore[attr-defined]
    assert echo.arity == 1 and echo.is_async is False


def test_builder_without_handler_is_not_a_step():
    builder = step(CONFIG)
    assert isinstance(builder, StepBuilder)
    assert "no handler yet" in repr(builder)


def test_invalid_config_fails_at_declaration():
    with pytest.raises(ConfigError, match="trigers"):
        step({"name": "x", "trigers": []}, handler)
    with pytest.raises(ConfigError, match="handler must be callable"):
        step({"name": "x"}, "not callable")  # type: ignore[call-overload]


async def two(input, ctx): ...
async def one(input): ...
def zero(): ...
def default_second(input, ctx=None): ...
def varargs(*args): ...
def with_kwargs(input, ctx, **kwargs): ...


class Callable2:
    async def __call__(self, input, ctx): ...


class Method:
    def handle(self, input): ...


@pytest.mark.parametrize(
    ("fn", "arity"),
    [
        (two, 2),
        (one, 1),
        (zero, 0),
        (default_second, 2),
        (varargs, 2),
        (with_kwargs, 2),
        (lambda input: None, 1),
        (Callable2(), 2),
        (Method().handle, 1),
        (functools.partial(two, 1), 1),
    ],
)
def test_handler_arity(fn, arity):
    assert handler_arity(fn) == arity


def test_handler_arity_rejects_unusable_signatures():
    def three(a, b, c): ...
    def kwonly(input, *, ctx): ...

    with pytest.raises(ConfigError, match="takes 3 arguments"):
        handler_arity(three)
    with pytest.raises(ConfigError, match="keyword-only"):
        handler_arity(kwonly)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [(two, True), (zero, False), (Callable2(), True), (functools.partial(two, 1), True), (Method().handle, False)],
)
def test_is_async_callable(fn, expected):
    assert is_async_callable(fn) is expected
