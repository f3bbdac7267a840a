"""Reading handler signatures: how many arguments to pass, and whether to await."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from motia.exceptions import ConfigError

__all__ = ["callable_name", "handler_arity", "is_async_callable"]


def is_async_callable(fn: object) -> bool:
    """True for ``async def`` functions, partials of them and objects with an ``async def __call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = None if inspect.isroutine(fn) else getattr(type(fn), "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


def handler_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments to pass: 2 for ``(input, ctx)``, 1 for ``(input)``, 0 for ``()``.

    Upstream Motia crashes on one-argument handlers (SPEC section 9); we look at the signature.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot read the signature of handler {fn!r}: {exc}") from None
    positional = 0
    required = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
            required += p.default is p.empty
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            raise ConfigError(f"handler {callable_name(fn)} has a required keyword-only argument {p.name!r}")
    if required > 2:
        raise ConfigError(f"handler {callable_name(fn)} takes {required} arguments; expected (input, ctx) or (input)")
    return min(positional, 2)


def callable_name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
