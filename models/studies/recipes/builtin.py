"""The zoo's built-in recipes, registered in this order: ``baseline``, ``kd``, ``finetune``, ``ptq``,
``qat``, ``kd_qat``, ``slimmable``.

Importing this module is what makes them known to :mod:`models.studies.recipes.registry`; code that
builds or runs run configs (studies, ``train``) imports it, and finds every recipe through the
registry.
"""

# isort: off
from models.studies.recipes.baseline import BASELINE
from models.studies.recipes.kd import KD
from models.studies.recipes.finetune import FINETUNE
from models.studies.recipes.ptq import PTQ
from models.studies.recipes.qat import QAT
from models.studies.recipes.kd_qat import KD_QAT
from models.studies.recipes.slimmable import SLIMMABLE
# isort: on

BUILT_IN = (BASELINE, KD, FINETUNE, PTQ, QAT, KD_QAT, SLIMMABLE)

# What code above the recipes uses, from here so that the built-ins are registered by then.
from models.studies.recipes.registry import (  # noqa: E402
    Control,
    Expansion,
    Job,
    Recipe,
    find,
    get,
    names,
    of,
    put_first,
    register,
    unregister,
)

put_first(BUILT_IN)  # listed to users in this order, whichever recipe module was imported first

__all__ = ["BUILT_IN", "Control", "Expansion", "Job", "Recipe", "find", "get", "names", "of", "register", "unregister"]
