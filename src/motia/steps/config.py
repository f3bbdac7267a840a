"""``StepConfig``: the validated form of a step's ``config`` dict."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from motia.exceptions import ConfigError
from motia.steps.legacy import is_v0_config, translate_v0
from motia.steps.triggers import Trigger, trigger_from_dict

__all__ = ["StepConfig", "parse_config"]


class StepConfig(BaseModel):
    """A step's configuration.

    ``name`` identifies the step (unique per app); ``triggers`` lists trigger objects (``http(...)``,
    ``cron(...)``, ...) or their dict forms; ``enqueues`` (topics, or dicts with ``topic``) and
    ``flows`` are metadata; ``include_files`` (``includeFiles``) lists files the step needs, relative to
    its file (the loader checks they exist). A Motia 0.x config (``{"type": "api", "path": ...}``) is
    translated first (:mod:`motia.steps.legacy`). Keys starting with ``virtual`` (Motia's diagram hints) are ignored;
    any other unknown key is an error, so a typo such as ``trigers`` cannot pass silently.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    triggers: tuple[Trigger, ...] = ()
    enqueues: tuple[str | dict[str, Any], ...] = ()
    flows: tuple[str, ...] = ()
    include_files: tuple[str, ...] = Field(default=(), validation_alias=AliasChoices("include_files", "includeFiles"))

    @model_validator(mode="before")
    @classmethod
    def _drop_virtual(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("virtual"))}
        return data

    @field_validator("include_files", mode="before")
    @classmethod
    def _one_or_more_files(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _name_is_clean(cls, value: str) -> str:
        if value != value.strip() or any(c in value for c in "\r\n\t"):
            raise ValueError("must not have surrounding whitespace or control characters")
        return value

    @field_validator("triggers", mode="before")
    @classmethod
    def _build_triggers(cls, value: Any) -> Any:
        if isinstance(value, Trigger | dict):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of triggers, e.g. [http('GET', '/path')]")
        built = []
        for item in value:
            if isinstance(item, dict):
                try:
                    item = trigger_from_dict(item)
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
            elif not isinstance(item, Trigger):
                raise ValueError(
                    f"{item!r} is not a trigger; use http(...), cron(...), queue(...), state(...) or stream(...)"
                )
            built.append(item)
        return tuple(built)

    @field_validator("enqueues", mode="before")
    @classmethod
    def _check_enqueues(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, dict) and not isinstance(item.get("topic"), str):
                    raise ValueError(f"{item!r} needs a string 'topic'")
        return value


def parse_config(config: StepConfig | dict[str, Any] | Any) -> StepConfig:
    """Validate ``config`` into a ``StepConfig``; raise ``ConfigError`` listing every problem."""
    if isinstance(config, StepConfig):
        return config
    if not isinstance(config, dict):
        raise ConfigError(f"step config must be a dict, got {type(config).__name__}")
    if is_v0_config(config):
        config = translate_v0(config)
    try:
        return StepConfig.model_validate(config)
    except ValidationError as exc:
        name = config.get("name")
        label = f"step {name!r}" if isinstance(name, str) else "step"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {_message(err)}" for err in exc.errors()
        )
        raise ConfigError(f"invalid config for {label}: {problems}") from None


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (expected name, description, triggers, enqueues, flows, include_files)"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
