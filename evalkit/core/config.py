"""The one validation layer: config dataclasses checked against their own field types and rules.

Every input that is a mapping of settings (a task YAML and its heads, metrics
and optimizer; a pre-training recipe's sections; an upstream's config.json;
`evalkit eval`'s options) is a dataclass. Its annotations are the schema:
`from_dict` refuses unknown keys (with a "did you mean"), missing required
keys and values of the wrong type, and applies each field's `rule(...)`
(bounds, choices, non-empty), naming the key in every message. Cross-field
checks stay in the dataclass's `__post_init__`. `evalkit validate` and
`evalkit eval` read inputs through the same dataclasses, so they apply the
same checks.

    @dataclass
    class OptimConfig(SerialisableConfig):
        lr: float = field(default=5e-4, metadata=rule(above=0))
        schedule: str = field(default="cosine", metadata=rule(choices=("cosine", "linear")))

Values are checked, not converted (an int is a valid float and stays an int),
except that a nested config's mapping becomes that config: an upstream's
config is hashed into its fingerprint, so reading it must not change it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections import abc
from pathlib import Path
from typing import Any, ClassVar, Self

from evalkit.core.errors import ConfigError
from evalkit.core.registry import suggest


def rule(
    *,
    above: float | None = None,
    min: float | None = None,  # noqa: A002 - reads as the rule's name at the call site
    below: float | None = None,
    max: float | None = None,  # noqa: A002
    choices: tuple | None = None,
    nonempty: bool = False,
    schema: type | None = None,
) -> dict[str, Any]:
    """A field's rule, as `field(metadata=rule(...))`.

    `above`/`min`/`below`/`max` bound every number in the value (for a list or mapping: each
    element), `choices` lists its allowed values, `nonempty` refuses an empty text, list or mapping,
    `schema` checks a plain mapping against a SerialisableConfig while keeping it a mapping.
    """
    found = {"above": above, "min": min, "below": below, "max": max, "choices": choices, "schema": schema}
    return {
        "rule": {k: v for k, v in found.items() if v is not None} | ({"nonempty": True} if nonempty else {})
    }


class SerialisableConfig:
    """Mixin for config dataclasses: `to_dict()` for config.json, `from_dict()` that checks the schema.

    Fields without a default are required; a subclass may also list keys that must be given
    although they have a default in `required_keys`.
    """

    required_keys: ClassVar[tuple[str, ...]] = ()
    # True for a record whose writer may add keys (a result file): keys the schema does not name are
    # left unchecked and not passed on, instead of refused
    open_keys: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> Self:
        """Builds the config from a dict (e.g. a config.json section); `where` names it in errors."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"{where}: expected a mapping of {cls.__name__} keys, got {type(data).__name__}."
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if cls.open_keys:
            data = {k: v for k, v in data.items() if k in fields}
        for key in data:
            if key not in fields:
                raise ConfigError(
                    f"{where}: unknown key {key!r} for {cls.__name__}.{suggest(str(key), fields)} "
                    f"Known keys: {', '.join(sorted(fields))}."
                )
        missing = [name for name, f in fields.items() if _required(f) or name in cls.required_keys]
        missing = [name for name in missing if name not in data]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}.")
        hints = _hints(cls)
        values = {
            key: check_field(fields[key], hints[key], value, f"{where}.{key}") for key, value in data.items()
        }
        return cls(**values)


def check_fields(config: Any, name_of: typing.Callable[[str], str]) -> None:
    """Checks the values of a dataclass made in Python (e.g. from the command line) against its schema;
    `name_of(field)` is how a message names the field (e.g. `--lr-grid`)."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        check_field(f, hints[f.name], getattr(config, f.name), name_of(f.name))


def check_field(f: dataclasses.Field, annotation: Any, value: Any, where: str) -> Any:
    """The value checked against the field's type and rule; a nested config's mapping becomes the config."""
    value = check_value(value, annotation, where)
    spec = f.metadata.get("rule", {})
    if spec:
        _check_rule(value, spec, where)
    return value


def check_value(value: Any, annotation: Any, where: str) -> Any:
    """Checks `value` against a type annotation; raises ConfigError naming `where` and the expected type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        return _check_union(value, annotation, where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} = {value!r} is not one of {', '.join(map(repr, args))}.")
        return value
    if origin in (list, tuple, dict, abc.Sequence, abc.Mapping):
        return _check_container(value, annotation, where)
    if isinstance(annotation, type) and issubclass(annotation, SerialisableConfig):
        return value if isinstance(value, annotation) else annotation.from_dict(value, where)
    if _is_a(value, annotation):
        return value
    raise _wrong(where, annotation, value)


def _check_union(value: Any, annotation: Any, where: str) -> Any:
    deeper = None  # an alternative of the value's shape that failed inside: its message says more
    for alternative in typing.get_args(annotation):
        try:
            return check_value(value, alternative, where)
        except ConfigError as e:
            if not str(e).startswith(f"{where} must be "):
                deeper = deeper or e
    raise deeper or _wrong(where, annotation, value)


def _check_container(value: Any, annotation: Any, where: str) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (dict, abc.Mapping):
        if not isinstance(value, dict):
            raise _wrong(where, annotation, value)
        key_type, item = args or (Any, Any)
        return {
            check_value(k, key_type, where): check_value(v, item, f"{where}.{k}") for k, v in value.items()
        }
    if not isinstance(value, list | tuple):
        raise _wrong(where, annotation, value)
    item = args[0] if args else Any
    return type(value)(check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value))


class Number(float):
    """As a field's type: any number, NaN and infinities included (what a metric may have measured);
    `float` is a finite number."""


def _is_a(value: Any, annotation: Any) -> bool:
    if annotation is Number:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is Path:
        return isinstance(value, str | Path)
    return isinstance(annotation, type) and isinstance(value, annotation)


def _wrong(where: str, annotation: Any, value: Any) -> ConfigError:
    hint = ""
    if isinstance(value, str) and (annotation is float or float in typing.get_args(annotation)):
        try:
            float(value)
            hint = " (YAML reads 5e-4 as text; write 5.0e-4)"
        except ValueError:
            pass
    return ConfigError(f"{where} must be {_describe(annotation)}; got {value!r:.80}{hint}.")


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple, abc.Sequence):
        return f"a list of {_describe(args[0]) if args else 'values'}"
    if origin in (dict, abc.Mapping):
        return f"a mapping of {_describe(args[1]) if len(args) == 2 else 'values'}"
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a finite number",
        Number: "a number",
        str: "text",
        Path: "a path",
    }
    if annotation in names:
        return names[annotation]
    if annotation is None or annotation is type(None):
        return "null"
    return f"a mapping of {annotation.__name__} keys" if isinstance(annotation, type) else str(annotation)


def _check_rule(value: Any, spec: dict[str, Any], where: str) -> None:
    if spec.get("nonempty") and isinstance(value, str | list | tuple | dict) and not value:
        raise ConfigError(f"{where} is empty; give a value.")
    if "choices" in spec and value not in spec["choices"]:
        choices = spec["choices"]
        raise ConfigError(
            f"{where} = {value!r} is not one of {', '.join(map(repr, choices))}.{suggest(str(value), [c for c in choices if isinstance(c, str)])}"
        )
    if "schema" in spec:
        spec["schema"].from_dict(value, where)
    for number in _numbers(value):
        if "above" in spec and not number > spec["above"]:
            raise ConfigError(f"{where} must be > {spec['above']:g}; got {number!r}.")
        if "min" in spec and not number >= spec["min"]:
            raise ConfigError(f"{where} must be >= {spec['min']:g}; got {number!r}.")
        if "below" in spec and not number < spec["below"]:
            raise ConfigError(f"{where} must be < {spec['below']:g}; got {number!r}.")
        if "max" in spec and not number <= spec["max"]:
            raise ConfigError(f"{where} must be <= {spec['max']:g}; got {number!r}.")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return []


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


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
