"""One except clause catches what any package refuses on purpose: every package's base exception,
and so its ConfigError, derives from EarshotError."""

import dataclasses

import pytest

import evaluation.config
import evaluation.errors
import models.config
import models.errors
import stimulus_sets.config
import stimulus_sets.errors
import webapp.errors
import webapp.typed_config
from common.errors import EarshotError


@dataclasses.dataclass(frozen=True)
class Tiny:
    size: int = 1


@pytest.mark.parametrize("base", [models.errors.ModelsError, stimulus_sets.errors.StimulusSetError,
                                  webapp.errors.WebappError, evaluation.errors.EvaluationError])
def test_each_package_base_derives_from_earshot_error(base):
    assert issubclass(base, EarshotError)
    assert base is not EarshotError


@pytest.mark.parametrize("from_dict, config_error", [
    (models.config.from_dict, models.errors.ConfigError),
    (stimulus_sets.config.from_dict, stimulus_sets.errors.ConfigError),
    (webapp.typed_config.from_dict, webapp.errors.ConfigError),
    (evaluation.config.from_dict, evaluation.errors.ConfigError),
])
def test_earshot_error_catches_each_packages_config_error(from_dict, config_error):
    with pytest.raises(EarshotError, match=r"tiny: unknown key 'colour'") as info:
        from_dict(Tiny, {"colour": "red"}, "tiny")
    assert type(info.value) is config_error
    assert isinstance(info.value, ValueError)
