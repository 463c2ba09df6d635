"""Config loading: unknown keys, types and YAML errors are reported with where they were found."""

from dataclasses import dataclass, field

import pytest

from models.config import from_dict, load_yaml, to_dict
from models.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    rate_hz: float = 1.0
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    items: tuple[Inner, ...] = ()
    size: int | None = None
    pair: tuple[float, int] = (0.0, 0)


def test_nested_conversion_and_round_trip():
    cfg = from_dict(Outer, {"name": "x", "inner": {"rate_hz": 2, "names": ["a", "b"]}, "items": [{}], "size": 3,
                            "pair": [1, 2]})
    assert cfg == Outer("x", Inner(2.0, ("a", "b")), (Inner(),), 3, (1.0, 2))
    assert isinstance(cfg.pair[0], float) and isinstance(cfg.pair[1], int)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "colour": 1}, r"config: unknown key 'colour' \(allowed: inner, items, name, pair, size\)"),
    ({"name": "x", "b": 1, "a": 2}, r"config: unknown keys 'a', 'b' \(allowed: "),
    ({"name": "x", "inner": {"rate": 1}}, r"config\.inner: unknown key 'rate'"),
    ({"name": "x", "items": [{}, {"names": "ab"}]}, r"config\.items\[1\]\.names: expected a list"),
    ({"name": "x", "size": "3"}, r"config\.size"),
    ({"name": "x", "size": True}, r"config\.size"),
    ({"name": "x", "inner": {"rate_hz": True}}, r"config\.inner\.rate_hz: expected a number, found True"),
    ({"name": "x", "pair": [1.0, 2.5]}, r"config\.pair\[1\]: expected an integer"),
    ({"name": "x", "pair": [1.0]}, r"config\.pair: expected 2 values, found 1"),
    ({}, r"missing required key 'name'"),
    ([1, 2], r"expected a mapping"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_yaml_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n  inner: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+: not valid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_yaml(tmp_path / "missing.yaml")
