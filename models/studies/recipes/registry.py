"""The recipe registry: every way the zoo makes a run (train from scratch, distil, quantize, slim)
is a :class:`Recipe`, looked up by the ``recipe`` name a study or a run config gives.

A recipe **expands** one entry of a study's ``recipes`` over a student into run configs,
**validates** its entry (:class:`~models.studies.study.RecipeSpec`) and its run configs
(:class:`~models.studies.run_config.RunConfig`) with one-line errors naming the key, and
**executes** a run: it gives the loss step the shared training loop trains with, or transforms a
source run without training, then finalises the run folder. It also answers what the study's
tables and figures ask of it (its colour, whether it is the reference the others are compared
against). Nothing else in the zoo compares recipe names: adding one is a module with the class and
a call to :func:`register` (see docs/architecture.md, "Adding an architecture or a recipe").

The built-in recipes are registered by :mod:`models.studies.recipes.builtin`, which code that
builds or runs run configs imports (:mod:`models.studies.runs`, :mod:`models.studies.study`).
This module imports no recipe and no run config, so each recipe module can import both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from models.errors import ConfigError


@dataclass(frozen=True)
class Expansion:
    """What one recipe entry expands over for one student of one dataset and seed.

    ``made`` holds the fp32 runs the recipes expanded before made of this student, trained from
    scratch (no ``init_run``): recipe label -> teacher name (None without one) -> run config; a
    recipe that starts from another recipe's runs (``source``) reads them here.
    """

    dataset: Any  # DatasetConfig
    net: Any  # the student's network config
    seed: int
    training: Any  # TrainingConfig of this recipe entry
    teacher_runs: dict[str, Any]  # teacher name -> its (baseline) RunConfig
    made: dict[str, dict[str | None, Any]]


@dataclass(frozen=True)
class Control:
    """A run the study compares other runs with because it had the same training budget.

    ``run`` is its run config (trained by the study like any run, or one of the study's runs
    already, such as a ``ptq`` run's fp32 source); ``of`` the run ids it is the control of;
    ``kind`` says what it is in the study's tables (``controls.csv``, ``quantization.csv``).
    ``if_trained``: a control worth comparing with but not worth training for its own sake; it
    counts only where an entry of the study makes the same run.
    """

    run: Any  # RunConfig
    of: tuple[str, ...]
    kind: str
    if_trained: bool = False


@dataclass
class Job:
    """A run being executed: what its loss step or its transform works with.

    ``model`` is the freshly seeded network of ``net`` (the dataset's knob count set), with the
    weights of the run's ``init_run`` loaded where it has one; ``train`` and ``validation`` are the
    warmed-up windows ``(count, time, 1)``; ``payload`` holds what every checkpoint of the run
    carries besides the network and its weights (dataset, sample rate, knob names, run id).
    """

    run_dir: Path
    runs_root: Path
    net: Any
    model: Any  # torch.nn.Module
    train: Any  # Windows
    validation: Any  # Windows
    payload: dict[str, Any]


class Recipe(ABC):
    """A way of making runs: its study entry, its run configs and what executing one does.

    Subclasses set ``name`` and implement :meth:`expand` and, when they train, :meth:`loss_step`
    (or, when they do not, :meth:`trains` and :meth:`transform`). The defaults fit a recipe that
    trains fp32 weights at full width from scratch, like ``baseline``.
    """

    name: ClassVar[str]
    colour: ClassVar[str] = "0.3"
    """Its family's colour in the study's figures (a matplotlib colour)."""
    reference: ClassVar[bool] = False
    """Plain training of the network alone: what the comparison (distilled vs not) and the width
    sweep (slimmed vs trained alone) measure the other recipes against."""
    distils: ClassVar[bool] = False
    """Learns from a teacher run's features: its runs have ``teacher_run`` and ``distill``."""
    quantized: ClassVar[bool] = False
    """Its runs hold bit-packed weights (``bits`` < 32; ``quantized.pt`` and ``shadow.pt``)."""
    slims: ClassVar[bool] = False
    """Trains slimmable networks: its runs have ``slimmable`` settings or a ``width`` below 1."""
    source_of_others: ClassVar[bool] = False
    """Its fp32 runs may be the ``source`` a recipe such as ``ptq`` starts from."""
    spec_keys: ClassVar[tuple[str, ...]] = ()
    """Which of a study entry's family keys (``bits``, ``source``, ``slimmable``) it reads; an entry
    giving one to a recipe that does not read it is refused. A recipe reading ``source`` starts from
    the fp32 runs of that entry (:attr:`Expansion.made`)."""

    # -- the study entry ---------------------------------------------------------------------

    def validate_spec(self, spec: Any) -> None:
        """Refuse keys of another recipe family in ``spec`` (a RecipeSpec of this recipe)."""
        if spec.slimmable is not None and "slimmable" not in self.spec_keys:
            readers = [n for n in names() if "slimmable" in get(n).spec_keys]
            raise ConfigError(f"recipe {spec.label!r}: slimmable options apply to the {listing(readers)} "
                              f"recipe{'s' if len(readers) > 1 else ''} only")
        for key in ("bits", "source"):
            if getattr(spec, key) and key not in self.spec_keys:
                readers = [n for n in names() if key in get(n).spec_keys]
                raise ConfigError(f"recipe {spec.label!r}: {key} applies to the {listing(readers)} "
                                  f"recipe{'s' if len(readers) > 1 else ''} only")

    def takes_source(self) -> bool:
        """Starts from the runs another recipe entry of the study (its ``source``) makes, so it is
        expanded after the recipes that train from scratch."""
        return "source" in self.spec_keys

    def validate_in_study(self, spec: Any, study: Any) -> None:
        """Checks that need the whole study (its teachers), made before its students are checked."""
        return  # optional hook: by default there is nothing to refuse

    def validate_student(self, spec: Any, net: Any, study: Any) -> None:
        """Refuse a student the entry names in ``students`` that this recipe cannot make runs of."""
        return  # optional hook: by default there is nothing to refuse

    def validate_source(self, spec: Any, source: Any, study: Any) -> None:
        """Refuse the entry's ``source`` entry when this recipe cannot start from its runs."""
        return  # optional hook: by default there is nothing to refuse

    def applies_to(self, net: Any) -> bool:
        """Whether an entry without a ``students`` list makes runs of ``net``."""
        return True

    @abstractmethod
    def expand(self, spec: Any, at: Expansion) -> list[Any]:
        """The run configs ``spec`` makes of ``at.net``, each dependency before its dependents."""
        raise NotImplementedError

    def controls(self, spec: Any, at: Expansion, made: list[Any]) -> list[Control]:
        """The budget-matched controls of the runs ``made`` (what :meth:`expand` returned): runs
        that differ from them only in what the recipe does (no teacher, no quantizer, no slimming),
        with the same data, seed, starting weights and training budget. The study trains them
        unless the entry says ``controls: false``."""
        return []

    # -- a run config ------------------------------------------------------------------------

    def validate_run(self, run: Any) -> None:
        """Refuse a run config this recipe cannot execute (RunConfig.__post_init__ calls this)."""
        check_full_width(run)
        check_fp32(run)

    def dependencies(self, run: Any) -> set[str]:
        """Run ids that must be complete before ``run`` can start (its teacher, its source)."""
        return {r for r in (run.teacher_run, run.init_run) if r}

    def trains(self, run: Any) -> bool:
        """Whether ``run`` trains through the training loop (else :meth:`transform` makes it)."""
        return True

    def cost_factor(self, run: Any) -> float:
        """Forward-backward passes per training window, relative to plain training."""
        return 1.0

    # -- executing a run ---------------------------------------------------------------------

    def loss_step(self, run: Any, job: Job) -> Any:
        """The loss step (:mod:`models.training.steps`) ``fit`` trains ``job.model`` with."""
        raise NotImplementedError(f"recipe {self.name!r} trains this run but defines no loss_step")

    def transform(self, run: Any, job: Job) -> None:
        """Write ``checkpoint.pt`` of a run that does not train, from ``job.model``."""
        raise NotImplementedError(f"recipe {self.name!r} trains every run")

    def finalise(self, run: Any, run_dir: Path) -> int | None:
        """Work on the best checkpoint once trained or transformed; returns the model's stored size
        in bytes when it is not its fp32 size."""
        return None

    def model_file(self, run: Any) -> str:
        """The file in the run folder holding the model as stored (runs.csv's ``file_bytes``)."""
        return "checkpoint.pt"


def check_full_width(run: Any) -> None:
    if run.width != 1.0 or run.slimmable is not None:
        slimming = [n for n in names() if get(n).slims]
        raise ConfigError(f"recipe {run.recipe} trains at full width; width and slimmable settings belong "
                          f"to the {listing(slimming)} recipe{'s' if len(slimming) > 1 else ''}")


def check_fp32(run: Any) -> None:
    if run.bits != 32:
        raise ConfigError(f"recipe {run.recipe} trains fp32 weights; bits must be 32, found {run.bits}")


def listing(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Make ``recipe`` known under its ``name``; a name is registered once."""
    name = recipe.name
    if name in _REGISTRY and type(_REGISTRY[name]) is not type(recipe):
        raise ConfigError(f"recipe {name!r} is already registered ({type(_REGISTRY[name]).__name__})")
    _REGISTRY[name] = recipe
    return recipe


def unregister(name: str) -> None:
    """Forget a recipe (tests that register one of their own clean up with this)."""
    _REGISTRY.pop(name, None)


def put_first(recipes: tuple[Recipe, ...]) -> None:
    """List ``recipes`` first, in this order: registration follows import order, which a module
    importing one recipe module before the others would change."""
    rest = {name: recipe for name, recipe in _REGISTRY.items() if recipe not in recipes}
    _REGISTRY.clear()
    _REGISTRY.update({recipe.name: recipe for recipe in recipes})
    _REGISTRY.update(rest)


def names() -> list[str]:
    """The registered recipes, in the order they were registered."""
    return list(_REGISTRY)


def get(name: Any, where: str = "recipe") -> Recipe:
    """The recipe registered as ``name``; ConfigError naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{where}: unknown recipe {name!r} (known: {', '.join(map(repr, names()))})") from None


def find(name: Any) -> Recipe | None:
    """The recipe registered as ``name``, or None (a runs.csv of a recipe no longer registered)."""
    return _REGISTRY.get(name) if isinstance(name, str) else None


def of(run: Any) -> Recipe:
    """The recipe of a run config (its ``recipe``)."""
    return get(run.recipe)
