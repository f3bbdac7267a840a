"""Typed scopes: one scope bound to a pydantic model, validated on every write, returned as models.

The stored value is the model's JSON form, so untyped access to the same scope keeps working; a value
that does not validate (written untyped) raises :class:`~motia.exceptions.StateValueError` when read
through the typed scope, naming the key.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from motia.exceptions import StateValueError
from motia.state.backends.types import Record
from motia.state.paging import read_page
from motia.state.types import JSON, StateEntry, StateSetResult
from motia.state.values import check_key

if TYPE_CHECKING:
    from motia.state.manager import StateManager
    from motia.state.transaction import StateTransaction

ModelT = TypeVar("ModelT", bound=BaseModel)


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'value'}: {item['msg']}" for item in error.errors()
    )


class TypedScope(Generic[ModelT]):
    """``state.scope("user-sessions", Session)``: the scope's values as ``Session`` instances."""

    def __init__(self, manager: StateManager, scope: str, model: type[ModelT]) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"a typed scope needs a pydantic model class, not {model!r}")
        self.manager = manager
        self.name = scope
        self.model = model

    def __repr__(self) -> str:
        return f"<TypedScope {self.name!r} of {self.model.__name__}>"

    def _dump(self, value: Any) -> JSON:
        """The JSON form of a valid value; raise ``StateValueError`` listing what is wrong."""
        try:
            instance = value if isinstance(value, self.model) else self.model.model_validate(value)
        except ValidationError as error:
            raise StateValueError(
                f"{self.model.__name__} rejects the value for scope {self.name!r}: {_problems(error)}"
            ) from None
        return instance.model_dump(mode="json")

    def _load(self, key: str, value: JSON) -> ModelT | None:
        if value is None:
            return None
        try:
            return self.model.model_validate(value)
        except ValidationError as error:
            raise StateValueError(
                f"({self.name!r}, {key!r}) holds a value that is not a valid {self.model.__name__}: {_problems(error)}"
            ) from None

    def _load_stored(self, key: str, data: bytes) -> ModelT:
        """Validate the stored JSON bytes straight into the model (no intermediate dict: much faster)."""
        try:
            return self.model.model_validate_json(data)
        except ValidationError as error:
            raise StateValueError(
                f"({self.name!r}, {key!r}) holds a value that is not a valid {self.model.__name__}: {_problems(error)}"
            ) from None

    def _record_entry(self, record: Record) -> StateEntry:
        return StateEntry(record.key, self._load_stored(record.key, record.data), record.version, record.expires_at)

    def _result(self, key: str, result: StateSetResult) -> StateSetResult:
        return StateSetResult(self._load(key, result.old_value), self._load(key, result.new_value), result.version)

    async def get(self, key: str) -> ModelT | None:
        self.manager.check_open()
        record = await self.manager.backend.get(self.name, check_key(key))
        return None if record is None else self._load_stored(key, record.data)

    async def get_entry(self, key: str) -> StateEntry | None:
        self.manager.check_open()
        record = await self.manager.backend.get(self.name, check_key(key))
        return None if record is None else self._record_entry(record)

    async def set(
        self, key: str, value: ModelT | dict[str, Any], *, ttl: float | None = None, if_version: int | None = None
    ) -> StateSetResult:
        result = await self.manager.set(self.name, key, self._dump(value), ttl=ttl, if_version=if_version)
        return self._result(key, result)

    async def update(
        self, key: str, ops: builtins.list[dict[str, Any]], *, ttl: float | None = None, retries: int = 5
    ) -> StateSetResult:
        """Apply update operations and validate the result; an invalid result writes nothing (atomically:
        the check and the write commit together, retried on a concurrent change)."""

        async def apply(transaction: StateTransaction) -> StateSetResult:
            result = await transaction.update(self.name, key, ops, ttl=ttl)
            self._dump(result.new_value)
            return result

        return self._result(key, await self.manager.transact(apply, retries=retries))

    async def delete(self, key: str, *, if_version: int | None = None) -> ModelT | None:
        return self._load(key, await self.manager.delete(self.name, key, if_version=if_version))

    async def list(self) -> builtins.list[ModelT]:
        return [entry.value for entry in await self.items()]

    async def items(
        self, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> builtins.list[StateEntry]:
        self.manager.check_open()
        records = await read_page(self.manager.backend, self.name, prefix, after, limit)
        return [self._record_entry(record) for record in records]
