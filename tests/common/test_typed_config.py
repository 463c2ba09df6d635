"""The shared config converter raises each package's own ConfigError (a subclass of its base
exception), and a dataclass's own refusal comes out as that error, naming where."""

from dataclasses import dataclass

import pytest

import evaluation.config
import models.config
import models.errors
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


@dataclass(frozen=True)
class Numbers:
    rate: float = 0.0
    count: int = 0


@pytest.mark.parametrize("text, value", [
    ("1e-3", 1e-3), ("1E-3", 1e-3), ("-1e+2", -100.0), ("+2.5e0", 2.5), (".5", 0.5), ("5.", 5.0),
    ("1_000.0", 1000.0), ("3", 3.0), ("1.0e-3", 1e-3), ("-0.25", -0.25),
])
def test_a_float_field_takes_every_spelling_of_a_number_a_user_writes(tmp_path, text, value):
    # YAML 1.1 (PyYAML) reads 1e-3, 1E-3 and -1e+2 as strings: the converter must still see numbers.
    path = tmp_path / "numbers.yaml"
    path.write_text(f"rate: {text}\n")
    assert models.config._typed.load(Numbers, path).rate == pytest.approx(value)


@pytest.mark.parametrize("text, message", [
    (".inf", "expected a finite number"), ("-.inf", "expected a finite number"), ("1e999", "expected a finite number"),
    (".nan", "expected a number, found NaN"), ("inf", "expected a number, found 'inf'"),
    ("nan", "expected a number, found 'nan'"), ("true", "expected a number, found True"),
    ("1e", "expected a number"), ("'1__0.0'", "expected a number"), ("'one'", "expected a number"),
])
def test_a_float_field_refuses_what_is_not_a_finite_number_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "numbers.yaml"
    path.write_text(f"rate: {text}\n")
    with pytest.raises(ModelsError, match=rf"numbers.yaml.rate: {message}"):
        models.config._typed.load(Numbers, path)


@pytest.mark.parametrize("text, message", [
    ("1e3", "expected an integer, found '1e3'"), ("2.0", "expected an integer, found 2.0"),
    ("yes", "expected an integer, found True"), ("false", "expected an integer, found False"),
])
def test_an_int_field_takes_integers_only(tmp_path, text, message):
    path = tmp_path / "numbers.yaml"
    path.write_text(f"count: {text}\n")
    with pytest.raises(ModelsError, match=rf"numbers.yaml.count: {message}"):
        models.config._typed.load(Numbers, path)


def test_a_post_init_refusal_of_the_package_error_still_names_the_file(tmp_path):
    @dataclass(frozen=True)
    class Positive:
        size: int = 1

        def __post_init__(self):
            if self.size < 1:
                raise models.errors.ConfigError(f"size: expected >= 1, found {self.size}")

    path = tmp_path / "positive.yaml"
    path.write_text("size: 0\n")
    with pytest.raises(ModelsError, match=r"positive.yaml: size: expected >= 1, found 0"):
        models.config._typed.load(Positive, path)
