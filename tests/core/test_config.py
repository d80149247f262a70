"""The one validation layer (`evalkit.core.config`): a dataclass's annotations and rules are its schema.

Task files, pre-training recipes, upstream configs, result files and `evalkit eval`'s options are all
checked by it; these tests pin the layer itself on a small config of every shape it supports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from evalkit.core.config import Number, SerialisableConfig, check_fields, rule
from evalkit.core.errors import ConfigError


@dataclass
class Inner(SerialisableConfig):
    width: int = field(default=4, metadata=rule(above=0))


@dataclass
class Outer(SerialisableConfig):
    required_keys = ("grid",)

    name: str = field(metadata=rule(nonempty=True))
    rate: float = field(default=0.1, metadata=rule(min=0, below=1))
    grid: list[float] = field(default_factory=lambda: [1.0], metadata=rule(above=0, nonempty=True))
    steps: int | dict[str, int] = field(default=10, metadata=rule(above=0))
    mode: str = field(default="a", metadata=rule(choices=("a", "b")))
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    loose: dict[str, Any] = field(default_factory=dict, metadata=rule(schema=Inner))
    measured: dict[str, Number | None] = field(default_factory=dict)
    flag: bool = False


@dataclass
class Open(SerialisableConfig):
    open_keys = True
    kept: int = 0


def test_a_valid_mapping_builds_the_config_with_nested_configs_and_values_unconverted():
    cfg = Outer.from_dict(
        {
            "name": "x",
            "grid": [1, 2.5],
            "steps": {"smoke": 3},
            "inner": {"width": 2},
            "maybe": {"width": 3},
            "loose": {"width": 5},
            "measured": {"a": float("nan"), "b": None},
        }
    )
    assert cfg.inner == Inner(2) and cfg.maybe == Inner(3)
    assert cfg.loose == {"width": 5}  # checked against Inner, kept a mapping
    assert cfg.grid == [1, 2.5] and isinstance(cfg.grid[0], int)  # checked, not converted (fingerprints)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"grid": [1.0]}, ["missing required key(s) name"]),
        ({"name": "x"}, ["missing required key(s) grid"]),
        ({"name": "x", "grid": [1.0], "nmae": 1}, ["unknown key 'nmae'", "Did you mean 'name'"]),
        ({"name": "", "grid": [1.0]}, ["outer.name is empty"]),
        ({"name": 3, "grid": [1.0]}, ["outer.name must be text; got 3"]),
        ({"name": "x", "grid": []}, ["outer.grid is empty"]),
        ({"name": "x", "grid": [1.0, -1]}, ["outer.grid must be > 0; got -1"]),
        ({"name": "x", "grid": [float("nan")]}, ["outer.grid[0] must be a finite number"]),
        ({"name": "x", "grid": "1e-3"}, ["outer.grid must be a list of a finite number"]),
        ({"name": "x", "grid": ["5e-4"]}, ["outer.grid[0]", "write 5.0e-4"]),
        ({"name": "x", "grid": [True]}, ["outer.grid[0] must be a finite number; got True"]),
        ({"name": "x", "grid": [1.0], "rate": 1}, ["outer.rate must be < 1; got 1"]),
        ({"name": "x", "grid": [1.0], "rate": -0.5}, ["outer.rate must be >= 0"]),
        ({"name": "x", "grid": [1.0], "steps": 0}, ["outer.steps must be > 0; got 0"]),
        ({"name": "x", "grid": [1.0], "steps": {"smoke": -5}}, ["outer.steps must be > 0; got -5"]),
        ({"name": "x", "grid": [1.0], "steps": 2.5}, ["outer.steps must be an integer or a mapping"]),
        ({"name": "x", "grid": [1.0], "mode": "c"}, ["outer.mode = 'c' is not one of 'a', 'b'"]),
        ({"name": "x", "grid": [1.0], "inner": {"width": 0}}, ["outer.inner.width must be > 0"]),
        ({"name": "x", "grid": [1.0], "inner": {"widht": 1}}, ["outer.inner: unknown key 'widht'"]),
        ({"name": "x", "grid": [1.0], "maybe": {"width": "2"}}, ["outer.maybe.width must be an integer"]),
        ({"name": "x", "grid": [1.0], "inner": [4]}, ["outer.inner: expected a mapping of Inner keys"]),
        ({"name": "x", "grid": [1.0], "loose": {"width": -1}}, ["outer.loose.width must be > 0"]),
        (
            {"name": "x", "grid": [1.0], "measured": {"a": "0.5"}},
            ["outer.measured.a must be a number or null"],
        ),
        ({"name": "x", "grid": [1.0], "flag": "yes"}, ["outer.flag must be true or false"]),
        ([], ["outer: expected a mapping of Outer keys, got list"]),
    ],
)
def test_every_mistake_is_an_error_naming_the_key(data, words):
    with pytest.raises(ConfigError) as e:
        Outer.from_dict(data, "outer")
    for word in words:
        assert word in str(e.value), (word, str(e.value))


def test_an_open_record_ignores_keys_its_schema_does_not_name_but_checks_the_rest():
    assert Open.from_dict({"kept": 1, "anything": [1, {}]}).kept == 1
    with pytest.raises(ConfigError, match="open.kept must be an integer"):
        Open.from_dict({"kept": "1"}, "open")


@dataclass
class Options:
    steps: int | None = field(default=None, metadata=rule(above=0))
    lr_grid: list[float] | None = field(default=None, metadata=rule(above=0, nonempty=True))

    def __post_init__(self) -> None:
        check_fields(self, name_of=lambda key: "--" + key.replace("_", "-"))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"steps": 0}, "--steps must be > 0"),
        ({"lr_grid": []}, "--lr-grid is empty"),
        ({"lr_grid": [float("nan")]}, "--lr-grid[0] must be a finite number"),
    ],
)
def test_options_made_in_python_are_checked_by_the_same_rules(kwargs, words):
    assert Options().steps is None
    with pytest.raises(ConfigError) as e:
        Options(**kwargs)
    assert words in str(e.value)
