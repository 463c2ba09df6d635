"""The shared config converter raises each package's own ConfigError (a subclass of its base
exception), and a dataclass's own refusal comes out as that error, naming where."""

from dataclasses import dataclass

import pytest

import evaluation.config
import models.config
import webapp.typed_config
from evaluation.errors import EvaluationError
from models.errors import ModelsError
from webapp.errors import WebappError


@dataclass(frozen=True)
class Band:
    low_hz: float = 0.0
    high_hz: float = 1.0

    def __post_init__(self):
        if self.high_hz <= self.low_hz:
            raise ValueError(f"high_hz must exceed low_hz, found {self.low_hz} and {self.high_hz}")


@pytest.mark.parametrize("from_dict, base", [
    (models.config.from_dict, ModelsError),
    (evaluation.config.from_dict, EvaluationError),
    (webapp.typed_config.from_dict, WebappError),
])
def test_each_package_gets_its_own_error(from_dict, base):
    assert from_dict(Band, {"low_hz": 2, "high_hz": 3.5}) == Band(2.0, 3.5)
    with pytest.raises(base, match=r"band: unknown key 'width'"):
        from_dict(Band, {"width": 1}, "band")
    with pytest.raises(base, match=r"band: high_hz must exceed low_hz, found 2.0 and 1.0"):
        from_dict(Band, {"low_hz": 2}, "band")


def test_an_unsupported_field_type_is_a_programming_error():
    @dataclass(frozen=True)
    class Odd:
        values: set[int] = frozenset()

    with pytest.raises(TypeError, match="unsupported config field type"):
        models.config.from_dict(Odd, {"values": [1]})
