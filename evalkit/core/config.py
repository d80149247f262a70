"""Configs that round-trip through config.json, the half of a checkpoint that is not weights."""

from __future__ import annotations

import dataclasses
from typing import Any, Self

from evalkit.core.errors import ConfigError
from evalkit.core.registry import suggest


class SerialisableConfig:
    """Mixin for config dataclasses: `to_dict()` for config.json, `from_dict()` that names bad keys."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> Self:
        """Builds the config from a dict (e.g. a config.json section); `where` names it in errors."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"{where}: expected a mapping of {cls.__name__} keys, got {type(data).__name__}."
            )
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"{where}: unknown key {key!r} for {cls.__name__}.{suggest(key, known)} "
                    f"Known keys: {', '.join(sorted(known))}."
                )
        return cls(**data)


def check_choice(owner: str, key: str, value: Any, choices: tuple) -> None:
    """Raises ConfigError unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(
            f"{owner}.{key} = {value!r} is not one of {', '.join(map(repr, choices))}.{suggest(str(value), choices)}"
        )


def check_positive(owner: str, **values: int) -> None:
    """Raises ConfigError for any integer that is not > 0."""
    for key, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{owner}.{key} must be a positive integer; got {value!r}.")


def check_probability(owner: str, **values: float) -> None:
    """Raises ConfigError for any rate outside [0, 1)."""
    for key, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{owner}.{key} must lie in [0, 1); got {value!r}.")
