"""Declaring a stream: ``StreamConfig``, the hooks of a stream file, and the checked ``StreamDefinition``.

Streams are declared two ways (SPEC 10.1): a ``*_stream.py`` / ``*.stream.py`` file with a ``config`` (a
dict, camelCase keys accepted, or a :class:`StreamConfig`) and optional module-level ``can_access`` /
``on_join`` / ``on_leave`` functions; or, motia-py 1.0 style, a module-level ``Stream(StreamConfig(...))``
or ``Stream("name")`` in any step file. Both end as one :class:`StreamDefinition`, checked once at start-up,
so a bad declaration fails there, naming its file, and never at the first write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from motia.exceptions import ConfigError

__all__ = [
    "DEFAULT_HISTORY",
    "StreamConfig",
    "StreamDefinition",
    "StreamSubscription",
    "check_stream_name",
    "definition_from_config",
]

#: Changes kept per (stream, group) for resume by ``seq`` (SPEC 10.4: at least 1,000).
DEFAULT_HISTORY = 1000
MAX_HISTORY = 1_000_000
MAX_STREAM_NAME_LENGTH = 256

#: Stream names appear in URLs (``/__motia/streams/{stream}/{group}``) and messages: a conservative alphabet.
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def check_stream_name(name: object) -> str:
    """Return ``name`` if it can name a stream, else raise :class:`ConfigError` saying why."""
    if not isinstance(name, str):
        raise ConfigError(f"a stream name must be a str, not {type(name).__name__}")
    if not name:
        raise ConfigError("a stream name must not be empty")
    if len(name) > MAX_STREAM_NAME_LENGTH:
        raise ConfigError(f"the stream name {name[:40]!r}... is longer than {MAX_STREAM_NAME_LENGTH} characters")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"the stream name {name!r} may hold only letters, digits and _ . : - (it appears in URLs)")
    return name


class StreamSubscription(BaseModel):
    """What a client asked to join, as the ``can_access`` / ``on_join`` / ``on_leave`` hooks see it:
    a group (``id`` is ``None``) or one item of it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    group_id: str = Field(validation_alias=AliasChoices("group_id", "groupId"))
    id: str | None = None
    stream_name: str | None = Field(default=None, validation_alias=AliasChoices("stream_name", "streamName"))
    subscription_id: str | None = Field(
        default=None, validation_alias=AliasChoices("subscription_id", "subscriptionId")
    )


#: ``can_access(subscription, auth_context) -> bool`` (sync or async).
AccessHook = Callable[..., Any]
#: ``on_join(subscription, ctx, auth_context)`` / ``on_leave(...)`` (sync or async).
PresenceHook = Callable[..., Any]


class StreamConfig(BaseModel):
    """A stream's configuration, as motia-py 1.0 spells it (``StreamConfig(name=..., schema=...)``).

    ``schema`` is a pydantic model class, a JSON Schema dict, or ``None`` (any JSON object). ``history``
    is how many changes of each group are kept for clients resuming by ``seq`` (pymotia's; default 1,000).
    ``base_config`` (``{"storage_type": "default"}``) is accepted for compatibility: every stream is stored
    in the app's state backend.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, extra="forbid")

    name: str
    description: str | None = None
    stream_schema: Any = Field(default=None, alias="schema")
    base_config: dict[str, Any] | None = Field(default=None, validation_alias=AliasChoices("base_config", "baseConfig"))
    history: int = Field(default=DEFAULT_HISTORY, ge=1, le=MAX_HISTORY)
    can_access: AccessHook | None = Field(default=None, validation_alias=AliasChoices("can_access", "canAccess"))
    on_join: PresenceHook | None = Field(default=None, validation_alias=AliasChoices("on_join", "onJoin"))
    on_leave: PresenceHook | None = Field(default=None, validation_alias=AliasChoices("on_leave", "onLeave"))

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        try:
            return check_stream_name(name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("stream_schema")
    @classmethod
    def _schema(cls, schema: Any) -> Any:
        if schema is None or isinstance(schema, dict) or (isinstance(schema, type) and issubclass(schema, BaseModel)):
            return schema
        raise ValueError(f"schema must be a pydantic model class, a JSON Schema dict or None, not {schema!r}")

    @field_validator("base_config")
    @classmethod
    def _base_config(cls, base_config: dict[str, Any] | None) -> dict[str, Any] | None:
        if base_config is None:
            return None
        storage = base_config.get("storage_type", base_config.get("storageType", "default"))
        if storage != "default":
            raise ValueError(
                f"storage_type {storage!r} is not supported: streams are stored in the app's state backend "
                "(storage_type 'default')"
            )
        return base_config

    @property
    def schema_(self) -> Any:
        """The item schema (``schema`` itself is a pydantic method name)."""
        return self.stream_schema


@dataclass(frozen=True)
class StreamDefinition:
    """A checked stream declaration: what the manager, the server and the console use."""

    name: str
    schema: Any = None
    history: int = DEFAULT_HISTORY
    description: str | None = None
    can_access: AccessHook | None = None
    on_join: PresenceHook | None = None
    on_leave: PresenceHook | None = None
    source: str | None = None  #: the file that declared it (named in errors and in the console)

    def declares_id(self) -> bool:
        """Whether the item schema has an ``id`` field: then the stored item is validated with its ``id``,
        which pymotia adds to every item (clients find items by it); otherwise without it."""
        schema = self.schema
        if schema is None:
            return False
        if isinstance(schema, dict):
            properties = schema.get("properties")
            return isinstance(properties, dict) and "id" in properties
        return "id" in schema.model_fields


def definition_from_config(
    config: StreamConfig | Mapping[str, Any], *, source: str | None = None, hooks: Mapping[str, Any] | None = None
) -> StreamDefinition:
    """Check ``config`` (a :class:`StreamConfig` or a stream file's ``config`` dict) and build the definition.

    ``hooks`` are a stream file's module-level ``can_access`` / ``on_join`` / ``on_leave`` (the config's
    own win when both are given). Raises :class:`ConfigError` naming ``source`` and every problem.
    """
    where = f" in {source}" if source else ""
    if isinstance(config, StreamConfig):
        checked = config
    elif isinstance(config, Mapping):
        try:
            checked = StreamConfig.model_validate(dict(config))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors()
            )
            raise ConfigError(f"invalid stream config{where}: {problems}") from None
    else:
        raise ConfigError(f"a stream config{where} must be a dict or a StreamConfig, not {type(config).__name__}")
    extra = dict(hooks or {})
    for name in ("can_access", "on_join", "on_leave"):
        hook = getattr(checked, name) or extra.get(name)
        if hook is not None and not callable(hook):
            raise ConfigError(f"{name}{where} must be callable, not {type(hook).__name__}")
        extra[name] = hook
    return StreamDefinition(
        name=checked.name,
        schema=checked.stream_schema,
        history=checked.history,
        description=checked.description,
        can_access=extra["can_access"],
        on_join=extra["on_join"],
        on_leave=extra["on_leave"],
        source=source,
    )
