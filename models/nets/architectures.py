"""The zoo's built-in architectures, registered: the residual LSTM stack (``lstm``), NAM's LSTM
(``nam_lstm``) and NAM's WaveNet with its presets (``wavenet``).

Importing this module is what makes them known to :mod:`models.nets.registry`; code that reads
configs (studies, checkpoints, exports) imports it, and finds every architecture through the
registry.
"""

from models.nets.lstm_architecture import LSTM
from models.nets.nam_lstm import NAM_LSTM
from models.nets.wavenet_architecture import WAVENET

BUILT_IN = (LSTM, NAM_LSTM, WAVENET)

# What code above the nets uses, from here so that the built-ins are registered by then.
from models.nets.registry import (  # noqa: E402
    Architecture,
    build_model,
    find,
    fp32_bytes,
    get,
    identity,
    is_net_config,
    label,
    macs_per_sample,
    names,
    net_from_dict,
    net_to_dict,
    of,
    of_model,
    parameter_count,
    register,
    size_label,
    student_config,
    unregister,
)

__all__ = ["BUILT_IN", "Architecture", "build_model", "find", "fp32_bytes", "get", "identity", "is_net_config", "label",
           "macs_per_sample", "names", "net_from_dict", "net_to_dict", "of", "of_model", "parameter_count",
           "register", "size_label", "student_config", "unregister"]
