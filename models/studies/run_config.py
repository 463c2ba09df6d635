"""A run's config: everything that determines a trained model, and the run id that hashes it.

The recipe named in ``recipe`` validates the rest (:meth:`models.studies.recipes.registry.Recipe.validate_run`);
the built-in recipes are registered once :mod:`models.studies.recipes.builtin` is imported, as
:mod:`models.studies.runs` and :mod:`models.studies.study` do.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.provenance import file_sha256
from models.config import to_dict
from models.data.datasets import DatasetConfig
from models.errors import ConfigError
from models.nets.architectures import identity as net_identity
from models.nets.architectures import is_net_config, label, net_from_dict
from models.nets.slimmable import SlimmableConfig
from models.studies.recipes.registry import get as recipe_named
from models.training.distill import DistillConfig
from models.training.loop import TrainingConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a trained model; its hash is part of the run id."""

    dataset: DatasetConfig
    model: Any  # a registered architecture's config (a stored record is converted)
    recipe: str = "baseline"  # a registered recipe's name
    variant: str = "baseline"
    teacher: str | None = None
    teacher_run: str | None = None
    distill: DistillConfig | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    seed: int = 0
    bits: int = 32
    init_run: str | None = None
    width: float = 1.0
    slimmable: SlimmableConfig | None = None

    def __post_init__(self) -> None:
        # Frozen: the one conversion a config read from config.json needs, made once here.
        object.__setattr__(self, "model", net_from_dict(self.model, "model"))
        if not 0.0 < self.width <= 1.0:
            raise ConfigError(f"width: expected a fraction in (0, 1], found {self.width}")
        recipe_named(self.recipe).validate_run(self)

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(identity(self), sort_keys=True).encode()).hexdigest()[:8]
        who = self.variant if self.teacher is None else f"{self.variant}-{self.teacher}"
        return f"{self.dataset.name}_{label(self.model)}_{who}_s{self.seed}_{digest}"


def identity(config: Any) -> Any:
    """The config without fields left at their defaults, recursively: what a run id hashes.

    A setting added to the code later, with a default that keeps the old behaviour, then leaves
    every existing run id — and so every finished run — valid.
    """
    if is_net_config(config):
        return net_identity(config)
    if dataclasses.is_dataclass(config):
        out = {}
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            out[f.name] = identity(value)
        if isinstance(config, DatasetConfig) and config.teacher_nam is not None:
            digest = _file_digest(config.teacher_nam)
            if digest is not None:
                out["teacher_nam_sha256"] = digest
        return out
    return to_dict(config)


def _file_digest(path: str) -> str | None:
    """sha256 of a capture file, so that a .nam replaced at the same path makes new runs (None
    while the file is missing: the dataset refuses it with its own error)."""
    try:
        stat = Path(path).expanduser().stat()
    except OSError:
        return None
    return _digest_of(str(Path(path).expanduser().resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)
