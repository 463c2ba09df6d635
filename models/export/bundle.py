"""Self-describing exports of trained runs: ``<name>.pt`` + ``<name>.json``, and NAM's ``.nam``.

The ``.pt`` holds what it takes to rebuild the network — its network config (stored as :func:`models.nets.registry.net_to_dict` writes it), the
sample rate, the knob names and the weights (fp32, or for a quantized run the bit-packed integers,
per-row scales and fp32 biases exactly as :mod:`models.nets.quantize` stores them) — so it loads with
neither the run folder nor the training config. The JSON manifest next to it says what the model
is and costs and where it came from (schema below, in :func:`build_manifest`); it carries the
sha256 of the ``.pt``, and :func:`load_export` refuses a ``.pt`` that does not match it.

Both files are written to temporary names first and then renamed, the ``.pt`` before the manifest:
an interrupted export leaves either the previous pair, or a new ``.pt`` whose old manifest no longer
matches it (refused with :class:`ExportIntegrityError`), never a truncated file.

``width`` exports a really smaller network cut by :func:`models.nets.slimmable.slim`; for a quantized
run the integers and scales are cut along with the weights, so the slimmed quantized model still
renders with exactly the dequantized weights of the kept channels.
"""

from __future__ import annotations

import copy
import datetime as _datetime
import functools
import hashlib
import io
import json
import logging
import math
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from common.outputs import write_file_atomic
from common.provenance import file_sha256, git_commit
from models.dsp.loudness import integrated_loudness
from models.errors import CheckpointError, ConfigError, ModelsError, OutputError
from models.inference.rendering import render, torch_threads
from models.nets.architectures import (
    build_model,
    label,
    macs_per_sample,
    net_from_dict,
    net_to_dict,
    of,
    parameter_count,
)
from models.nets.quantize import (
    QuantizedWeights,
    dequantize_tensor,
    load_quantized,
    pack_integers,
    quantized_names,
    unpack_integers,
)
from models.nets.slimmable import allowed_widths, slim
from models.studies.recipes.builtin import find as find_recipe
from models.training.checkpoints import CHECKPOINT, describe_exception, load_model

log = logging.getLogger(__name__)

SCHEMA = "earshot-export"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
# The run-folder files this module reads (names owned by models.studies.runs; repeated so that exporting
# does not import the training machinery).
CONFIG_JSON = "config.json"
METRICS_JSON = "metrics.json"
QUANTIZED_PT = "quantized.pt"
# The fixed loudness test signal: a seeded guitar excerpt (peak −6 dBFS) at the model's rate,
# every knob at mid travel. Long enough for BS.1770's 400 ms gating blocks to settle.
TEST_SIGNAL = {"generator": "models.dsp.signals.excerpt", "kind": "guitar", "duration_s": 3.0, "seed": 1534}
TEST_KNOB_VALUE = 0.5
Format = Literal["pt", "nam", "both"]
FORMATS = ("pt", "nam", "both")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@%+-]*$")


class ExportError(CheckpointError):
    """An export cannot be written or read: missing files, bad names, unusable runs."""


class ExportIntegrityError(ExportError):
    """An exported ``.pt`` does not match its manifest (sha256, architecture or tensors)."""


class ExportSchemaError(ExportError):
    """A manifest is not an Earshot export, or of a schema version this code does not read."""


@dataclass(frozen=True)
class RunSource:
    """A trained run as read from its folder: the best model and what the folder says about it.

    ``quantized`` holds the integers and scales of a quantized run (None for fp32 runs);
    ``config`` is config.json (empty when the folder has none) and ``metrics`` metrics.json's row
    (None while the run is unfinished).
    """

    run_dir: Path
    model: nn.Module
    net: Any
    payload: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any] | None
    quantized: QuantizedWeights | None

    @property
    def bits(self) -> int:
        return 32 if self.quantized is None else self.quantized.bits

    @property
    def slimmable(self) -> bool:
        """Trained to run at several widths (the slimmable recipe, or the slimmable WaveNet preset)."""
        recipe = find_recipe(self.config.get("recipe"))
        return ((recipe is not None and recipe.slims) or self.config.get("slimmable") is not None
                or of(self.net).slimmable_by_design(self.net))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} line {exc.lineno}: {what} is not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: {what} cannot be read ({exc})") from None


def read_run(run_dir: str | Path) -> RunSource:
    """Load the best checkpoint of a run folder (or of the folder holding a ``checkpoint.pt``).

    ExportError for a path that is not a run folder, a run with no checkpoint yet, or a quantized
    run whose quantization has not been finalised (no ``quantized.pt``, or one that disagrees
    with the checkpoint's weights).
    """
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.name == CHECKPOINT:
        run_dir = run_dir.parent
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: expected a run folder (holding {CHECKPOINT}), found "
                          f"{'a file' if run_dir.exists() else 'nothing'}")
    has_config = (run_dir / CONFIG_JSON).is_file()
    if not (run_dir / CHECKPOINT).is_file():
        if has_config:
            raise ExportError(f"{run_dir}: run not trained yet (no {CHECKPOINT}); train it first with "
                              f"`python -m models train {run_dir}`")
        raise ExportError(f"{run_dir}: not a run folder (expected {CONFIG_JSON} and {CHECKPOINT})")
    config = _read_json(run_dir / CONFIG_JSON, "the run config") if has_config else {}
    if not isinstance(config, dict):
        raise ExportError(f"{run_dir / CONFIG_JSON}: expected a mapping, found {type(config).__name__}")
    model, payload = load_model(run_dir / CHECKPOINT)
    net = net_from_dict(payload["net"], where=f"{run_dir / CHECKPOINT}: net")
    metrics = None
    if (run_dir / METRICS_JSON).is_file():
        document = _read_json(run_dir / METRICS_JSON, "the run metrics")
        metrics = document.get("row") if isinstance(document, dict) else None
    quantized = None
    config_bits = config.get("bits", 32)
    if "bits" in payload or config_bits != 32:
        if "bits" not in payload:
            raise ExportError(f"{run_dir}: a {config_bits}-bit run whose quantization is not finished "
                              f"({CHECKPOINT} still holds the fp32 training weights); finish the run first")
        if not (run_dir / QUANTIZED_PT).is_file():
            raise ExportError(f"{run_dir}: {CHECKPOINT} says {payload['bits']}-bit, but {QUANTIZED_PT} "
                              "(the integer weights) is missing")
        quantized, _ = load_quantized(run_dir / QUANTIZED_PT)
        _check_quantized_matches(quantized, model, run_dir)
    return RunSource(run_dir, model, net, payload, config, metrics, quantized)


def _check_quantized_matches(weights: QuantizedWeights, model: nn.Module, where: Path) -> None:
    """The integers × scales must be exactly the weights the checkpoint renders with."""
    state = model.state_dict()
    dequantized = weights.state_dict()
    if set(dequantized) != set(state):
        raise ExportError(f"{where}: {QUANTIZED_PT} holds tensors {sorted(set(dequantized) ^ set(state))[:5]} "
                          f"that {CHECKPOINT} does not (or the reverse)")
    for name, tensor in state.items():
        if not torch.equal(dequantized[name], tensor.to(torch.float32)):
            raise ExportError(f"{where}: {QUANTIZED_PT} and {CHECKPOINT} disagree on {name!r}; "
                              "re-run the quantized run's finalisation")


# ---------------------------------------------------------------------------------------------
# Slimming (with the integers of a quantized model)


def _check_width(width: float | None, source: RunSource) -> float:
    if width is None:
        return 1.0
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) \
            or not 0.0 < width <= 1.0:
        raise ConfigError(f"width: expected a fraction of the network's channels in (0, 1], found {width!r}")
    smallest = min(allowed_widths(source.model)) if of(source.net).slimmable else 1.0
    if width < smallest:
        raise ConfigError(f"width {width:g} is below the narrowest this {label(source.net)} allows "
                          f"({smallest:g}: one channel of its widest layer)")
    if width < 1.0 and not source.slimmable:
        log.warning("%s was not trained as a slimmable network: its output at width %g will be poor",
                    label(source.net), width)
    return float(width)


@torch.no_grad()
def _slim_quantized(model: nn.Module, weights: QuantizedWeights, width: float,
                    small: nn.Module) -> QuantizedWeights:
    """Cut integers and scales exactly as :func:`slim` cuts the weights.

    The same slicing is applied to a copy of the model holding the integers and to one holding
    each quantized weight's row index, which says which per-row scale every kept row has.
    """
    integers_model, rows_model = copy.deepcopy(model), copy.deepcopy(model)
    integer_state, row_state = {}, {}
    for name, tensor in model.state_dict().items():
        if name in weights.integers:
            integer_state[name] = weights.integers[name].to(torch.float32)
            shape = (-1,) + (1,) * (tensor.dim() - 1)
            row_state[name] = torch.arange(tensor.shape[0], dtype=torch.float32).reshape(shape).expand_as(tensor)
        else:
            integer_state[name] = row_state[name] = tensor
    integers_model.load_state_dict(integer_state)
    rows_model.load_state_dict(row_state)
    cut_integers = slim(integers_model, width).state_dict()
    cut_rows = slim(rows_model, width).state_dict()
    reference = small.state_dict()
    integers, scales, floats = {}, {}, {}
    for name, tensor in reference.items():
        if name in weights.integers:
            integers[name] = cut_integers[name].to(torch.int8)
            rows = cut_rows[name].reshape(tensor.shape[0], -1)[:, 0].to(torch.long)
            scales[name] = weights.scales[name][rows].clone()
        else:
            floats[name] = tensor.detach().clone().to(torch.float32)
    cut = QuantizedWeights(weights.bits, integers, scales, floats)
    for name, tensor in cut.state_dict().items():
        if not torch.equal(tensor, reference[name]):
            raise ExportError(f"slimming the quantized weights to width {width:g} changed {name!r}")
    return cut


# ---------------------------------------------------------------------------------------------
# Measurements


@functools.lru_cache(maxsize=4)
def loudness_test_signal(sample_rate: int) -> np.ndarray:
    """The fixed loudness test signal (see TEST_SIGNAL) at ``sample_rate``: (time,) float32."""
    from models.dsp.signals import excerpt

    return excerpt(TEST_SIGNAL["kind"], TEST_SIGNAL["duration_s"], int(sample_rate), TEST_SIGNAL["seed"])


def _lufs(value: float) -> float | None:
    # JSON has no infinity: silence (or a NaN output) is recorded as null.
    return round(value, 3) if math.isfinite(value) else None


def measure_loudness(model: nn.Module, sample_rate: int, knob_names: list[str]) -> dict[str, Any]:
    """BS.1770-4 integrated loudness of the model's output on the fixed test signal."""
    x = loudness_test_signal(sample_rate)
    knobs = [TEST_KNOB_VALUE] * len(knob_names)
    # One thread, as everywhere in the zoo: small models gain nothing from two on a shared machine.
    with torch_threads(1):
        y = render(model, x, knobs or None)
    output, dry = integrated_loudness(y, sample_rate), integrated_loudness(x, sample_rate)
    return {
        "output_lufs": _lufs(output),
        "input_lufs": _lufs(dry),
        "gain_lu": _lufs(output - dry) if math.isfinite(output) and math.isfinite(dry) else None,
        "meter": "ITU-R BS.1770-4 integrated loudness (pyloudnorm)",
        "test_signal": {**TEST_SIGNAL, "sample_rate": int(sample_rate), "peak_dbfs": -6.0},
        "knobs": dict(zip(knob_names, knobs, strict=True)),
    }


def _latency(source: RunSource, model: nn.Module, sample_rate: int) -> dict[str, Any]:
    field = getattr(model, "receptive_field", None)
    compensated = source.config.get("latency_samples")
    return {
        # LSTMs and causal WaveNets compute output n from inputs up to n: no look-ahead.
        "algorithmic_samples": 0,
        "receptive_field_samples": field,
        "dataset_compensated_samples": compensated,
        "dataset_compensated_ms": None if compensated is None else round(1000.0 * compensated / sample_rate, 3),
        "note": "the model adds no delay of its own (streaming adds one block); the training data's "
                "device latency (dataset_compensated_samples) was removed from the targets and is not modelled",
    }


_sha256 = file_sha256


# ---------------------------------------------------------------------------------------------
# Writing


def _pt_payload(net: Any, model: nn.Module, quantized: QuantizedWeights | None,
                sample_rate: int, knob_names: list[str]) -> dict[str, Any]:
    payload: dict[str, Any] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "net": net_to_dict(net),
                               "sample_rate": int(sample_rate), "knob_names": list(knob_names)}
    if quantized is None:
        payload["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        payload["quantized"] = {
            "bits": quantized.bits,
            "packed": {n: pack_integers(q, quantized.bits) for n, q in quantized.integers.items()},
            "shapes": {n: list(q.shape) for n, q in quantized.integers.items()},
            "scales": dict(quantized.scales),
            "floats": dict(quantized.floats),
        }
    return payload


def _quantization_manifest(quantized: QuantizedWeights) -> dict[str, Any]:
    return {
        "bits": quantized.bits,
        "scheme": "symmetric, one fp32 scale per output row (LSTM gate row, Linear row, Conv1d out-channel); "
                  f"integers in [-{2 ** (quantized.bits - 1) - 1}, {2 ** (quantized.bits - 1) - 1}]; "
                  "weight = integer * scale; biases and other tensors fp32",
        "packing": f"offset-binary {quantized.bits}-bit fields (integer + {2 ** (quantized.bits - 1) - 1}), "
                   "most significant bit first, row-major, padded to a whole byte (models.nets.quantize.pack_integers)",
        "tensors": {
            name: {"shape": list(q.shape), "packed": f"quantized.packed.{name}",
                   "scales": f"quantized.scales.{name}", "rows": int(q.shape[0])}
            for name, q in quantized.integers.items()
        },
        "float_tensors": {name: f"quantized.floats.{name}" for name in quantized.floats},
        "packed_bytes": quantized.packed_bytes,
    }


def check_name(name: str) -> str:
    """A plain file name for the exported files (no folders, no leading dot)."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith((".pt", ".json", ".nam")):
        raise ConfigError(f"export name: expected a plain file name of letters, digits and . _ - @ % + "
                          f"without an extension, found {name!r}")
    return name


def default_name(source: RunSource, width: float = 1.0) -> str:
    base = source.payload.get("run_id") or source.config.get("run_id") or source.run_dir.name
    base = re.sub(r"[^A-Za-z0-9._@%+-]", "_", str(base)).lstrip(".") or "model"
    return base if width == 1.0 else f"{base}_w{round(100 * width)}"


def build_manifest(source: RunSource, name: str, net: Any, model: nn.Module,
                   quantized: QuantizedWeights | None, width: float, pt_bytes: int, pt_sha256: str,
                   nam: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON manifest of an export (schema ``earshot-export`` version 1).

    Keys: ``schema``, ``schema_version``, ``name``, ``files`` (file names relative to the
    manifest), ``architecture`` (``net``: the stored network config; ``label``; ``knob_names``; ``module``),
    ``parameters``, ``macs_per_sample``, ``bits`` (32 for fp32), ``quantization`` (None, or the
    scheme, packing and the .pt keys of every integer, scale and float tensor), ``size`` (bytes),
    ``widths``, ``sample_rate``, ``loudness``, ``latency``, ``test_metrics`` (metrics.json's
    test_* and real-time factors, None for unfinished runs), ``nam`` (None without a ``.nam``; else the
    file's format ``version`` and ``container``: None, or the SlimmableContainer's file, version, widths and
    ``max_values``) and ``provenance``.
    """
    sample_rate = int(source.payload["sample_rate"])
    knob_names = list(source.payload.get("knob_names") or [])
    metrics = source.metrics
    test_metrics = None
    if metrics is not None:
        # JSON has no infinity or NaN (an SNR of a perfect model is +inf): those become null.
        test_metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                        for k, v in metrics.items() if k.startswith(("test_", "rtf_"))}
    slimmable_config = source.config.get("slimmable") if isinstance(source.config.get("slimmable"), dict) else None
    fp32 = 4 * parameter_count(model)
    container = (nam or {}).get("container")
    files = {"weights": f"{name}.pt", **({"nam": nam["file"]} if nam else {}),
             **({"nam_container": container["file"]} if container else {})}
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "files": files,
        "architecture": {
            "net": net_to_dict(net),
            "label": label(net),
            "knob_names": knob_names,
            "module": f"{type(model).__module__}.{type(model).__qualname__}",
        },
        "parameters": parameter_count(model),
        "macs_per_sample": macs_per_sample(net),
        "bits": 32 if quantized is None else quantized.bits,
        "quantization": None if quantized is None else _quantization_manifest(quantized),
        "size": {"fp32_bytes": fp32, "bytes": fp32 if quantized is None else quantized.packed_bytes,
                 "file_bytes": pt_bytes},
        "widths": {
            "slimmable": source.slimmable,
            "exported": width,
            "net_width": getattr(net, "width", 1.0),
            # Fractions of the exported network that models.nets.slimmable.slim accepts as distinct cuts.
            "allowed": [round(w, 6) for w in allowed_widths(model)] if source.slimmable else [1.0],
            "trained": None if slimmable_config is None else (slimmable_config.get("train_widths")
                                                              or slimmable_config.get("widths")),
        },
        "sample_rate": sample_rate,
        "loudness": measure_loudness(model, sample_rate, knob_names),
        "latency": _latency(source, model, sample_rate),
        "test_metrics": test_metrics,
        "nam": None if nam is None else {
            "version": nam["version"],
            "container": None if container is None else {k: container[k] for k in ("file", "version", "widths",
                                                                                  "max_values")},
        },
        "provenance": {
            "run_id": source.payload.get("run_id") or source.config.get("run_id"),
            "dataset": source.payload.get("dataset"),
            "recipe": source.config.get("recipe"),
            "variant": source.config.get("variant"),
            "teacher": source.config.get("teacher"),
            "seed": source.config.get("seed"),
            "complete": metrics is not None,
            "git_commit": source.config.get("git_commit"),
            "export_git_commit": git_commit(),
            "exported_at": _datetime.datetime.now(_datetime.UTC).isoformat(timespec="seconds"),
            "weights_sha256": pt_sha256,
            **({"nam_sha256": nam["sha256"]} if nam else {}),
            **({"nam_container_sha256": container["sha256"]} if container else {}),
        },
    }


def container_widths(source: RunSource) -> list[float]:
    """The widths a run's SlimmableContainer holds: the slimmable settings' ``widths`` (the widths the study
    made into runs; the default settings' for the slimmable preset without settings), and 1.0.
    ConfigError for a run that is not a full-width slimmable WaveNet."""
    from models.nets.slimmable import SlimmableConfig

    where = f"--nam-container ({source.run_dir})"
    if of(source.net).name != "wavenet" or not source.slimmable:
        raise ConfigError(f"{where}: a SlimmableContainer holds the widths of a slimmable WaveNet run "
                          f"(recipe slimmable or preset slimmable), found {label(source.net)} "
                          f"(recipe {source.config.get('recipe')!r})")
    if getattr(source.net, "width", 1.0) != 1.0:
        raise ConfigError(f"{where}: this run is {label(source.net)}, one width cut from a slimmable run; "
                          f"export the full-width run ({source.config.get('init_run') or 'its init_run'})")
    settings = source.config.get("slimmable")
    widths = settings.get("widths") if isinstance(settings, dict) else None
    return sorted({float(w) for w in (widths or SlimmableConfig().widths)} | {1.0})


def export_run(run_dir: str | Path, out_dir: str | Path, fmt: Format = "pt", width: float | None = None,
               name: str | None = None, nam_version: str = "0.5.4", nam_container: bool = False) -> dict[str, Any]:
    """Export a trained run into ``out_dir``; returns ``{"manifest", "paths", "not_written"}``.

    ``fmt``: ``pt`` writes ``<name>.pt`` + ``<name>.json``; ``nam`` writes ``<name>.nam`` (WaveNets
    and NAM LSTMs only; an LSTMStack is refused by :func:`models.export.nam_format.export_nam`); ``both``
    writes all three, the manifest naming the ``.nam`` and its sha256 — or, for a network NAM cannot
    hold, the two it can, with ``not_written`` mapping ``nam`` to the reason. ``width`` cuts the network
    with :func:`models.nets.slimmable.slim` first. ``name`` defaults to the run id (``_w50`` appended at
    width 0.5). ``manifest`` is None for ``nam`` alone. ``nam_version``: the ``.nam`` format, ``0.5.4``
    (NAM <= 0.12 and every plug-in) or ``0.7.0`` (NAM 0.13); see :mod:`models.export.nam_format`.
    ``nam_container`` (with ``nam`` or ``both``, for a full-width slimmable WaveNet run): also
    ``<name>_slimmable.nam``, one format-0.7.0 SlimmableContainer of the widths :func:`container_widths`
    names (paths key ``nam_container``).
    """
    from models.export.nam_format import find_nam_version

    if fmt not in FORMATS:
        raise ConfigError(f"format: expected one of {list(FORMATS)}, found {fmt!r}")
    find_nam_version(nam_version)
    if nam_container and fmt == "pt":
        raise ConfigError("--nam-container: the container is a .nam file; use --format nam or both, found pt")
    source = read_run(run_dir)
    widths = container_widths(source) if nam_container else None
    width = _check_width(width, source)
    name = check_name(name) if name is not None else default_name(source, width)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir}: expected a folder, found a file")
    model, net, quantized = source.model, source.net, source.quantized
    if width != 1.0:
        model = slim(source.model, width).eval()
        net = of(source.net).slimmed_config(source.net, width)
        if quantized is not None:
            quantized = _slim_quantized(source.model, source.quantized, width, model)
    sample_rate = int(source.payload["sample_rate"])
    paths: dict[str, Path] = {}
    not_written: dict[str, str] = {}
    nam = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if fmt in ("nam", "both"):
            from models.export.nam_format import CONTAINER_VERSION, export_nam, export_nam_container

            nam_path = out_dir / f"{name}.nam"
            nam_metadata = {"name": name, "earshot_run_id": source.payload.get("run_id"), "bits": source.bits,
                            **_nam_weights_note(source.bits)}
            try:
                # Already cut to `width`: the .nam holds exactly the network the .pt holds.
                export_nam(model, nam_path, sample_rate, metadata=nam_metadata, nam_version=nam_version)
            except ConfigError as exc:
                if fmt == "nam":
                    raise
                not_written["nam"] = str(exc)  # `both`: the .pt and manifest still hold the model
            else:
                paths["nam"] = nam_path
                nam = {"file": nam_path.name, "sha256": _sha256(nam_path), "version": nam_version}
            if widths is not None and nam is not None:
                container_path = out_dir / f"{name}_slimmable.nam"
                document = export_nam_container(source.model, container_path, sample_rate, widths,
                                                metadata={**nam_metadata, "name": f"{name}_slimmable"})
                paths["nam_container"] = container_path
                nam["container"] = {"file": container_path.name, "sha256": _sha256(container_path),
                                    "version": CONTAINER_VERSION, "widths": widths,
                                    "max_values": [s["max_value"] for s in document["config"]["submodels"]]}
        manifest = None
        if fmt in ("pt", "both"):
            manifest, pt_path, json_path = _write_pt(source, out_dir, name, net, model, quantized, width, nam)
            paths["pt"], paths["json"] = pt_path, json_path
    except OSError as exc:
        if isinstance(exc, ModelsError):
            raise
        raise ExportError(f"cannot write the export into {out_dir}: {exc.strerror or exc}") from None
    log.info("exported %s (%s, %d-bit, width %g) to %s", source.run_dir.name, label(net), source.bits, width,
             ", ".join(str(p) for p in paths.values()))
    return {"manifest": manifest, "paths": paths, "not_written": not_written}


def _nam_weights_note(bits: int) -> dict[str, str]:
    """What a ``.nam`` of a quantized run holds: NAM stores float weights, so it gets the dequantized ones."""
    if bits == 32:
        return {}
    return {"earshot_weights": f"dequantized: each weight is its {bits}-bit integer times its row's scale, "
                               "the values Earshot renders the quantized run with, written as floats (NAM "
                               "has no quantized weights); the packed integers are in the .pt export"}


def _write_pt(source: RunSource, out_dir: Path, name: str, net: Any, model: nn.Module,
              quantized: QuantizedWeights | None, width: float, nam: dict[str, Any] | None):
    pt_path, json_path = out_dir / f"{name}.pt", out_dir / f"{name}.json"
    payload = _pt_payload(net, model, quantized, int(source.payload["sample_rate"]),
                          list(source.payload.get("knob_names") or []))
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    manifest = build_manifest(source, name, net, model, quantized, width, len(data),
                              hashlib.sha256(data).hexdigest(), nam)
    # The .pt first: a manifest is never on disk without the weights it describes.
    write_file_atomic(pt_path, data, OutputError)
    write_file_atomic(json_path, json.dumps(manifest, indent=2, allow_nan=False) + "\n", OutputError)
    return manifest, pt_path, json_path


# ---------------------------------------------------------------------------------------------
# Reading


def _paths(path: str | Path) -> tuple[Path, Path]:
    """(manifest, weights) for a manifest, a ``.pt`` or the common stem."""
    path = Path(path)
    if path.suffix == ".json":
        return path, path.with_suffix(".pt")
    if path.suffix == ".pt":
        return path.with_suffix(".json"), path
    return path.with_name(path.name + ".json"), path.with_name(path.name + ".pt")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an export (path to the ``.json``, the ``.pt`` or their stem), schema checked."""
    manifest_path, _ = _paths(path)
    if not manifest_path.is_file():
        raise ExportError(f"{manifest_path}: export manifest not found (an export is <name>.pt + <name>.json)")
    manifest = _read_json(manifest_path, "the export manifest")
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise ExportSchemaError(f"{manifest_path}: not an Earshot export manifest (expected schema "
                                f"{SCHEMA!r}, found {found!r})")
    version = manifest.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ExportSchemaError(f"{manifest_path}: schema version {version!r} is not one this code reads "
                                f"({list(SUPPORTED_SCHEMA_VERSIONS)}); export the run again with this version")
    for key in ("architecture", "bits", "sample_rate", "provenance"):
        if key not in manifest:
            raise ExportSchemaError(f"{manifest_path}: missing key {key!r}")
    return manifest


def _load_pt(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    manifest_path, pt_path = _paths(path)
    manifest = read_manifest(manifest_path)
    if not pt_path.is_file():
        raise ExportError(f"{pt_path}: the weights named by {manifest_path.name} are missing")
    expected = manifest["provenance"].get("weights_sha256")
    found = _sha256(pt_path)
    if found != expected:
        raise ExportIntegrityError(f"{pt_path}: sha256 {found[:16]}… does not match the manifest's "
                                   f"{str(expected)[:16]}… ({manifest_path.name}); the file was changed or "
                                   "the export was interrupted: export the run again")
    try:
        payload = torch.load(pt_path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ExportIntegrityError(f"{pt_path}: unreadable ({describe_exception(exc)})") from None
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise ExportSchemaError(f"{pt_path}: not an Earshot export (expected schema {SCHEMA!r})")
    if payload.get("net") != manifest["architecture"].get("net"):
        raise ExportIntegrityError(f"{pt_path}: its network {payload.get('net')} differs from the manifest's "
                                   f"{manifest['architecture'].get('net')}")
    return manifest, payload, pt_path


def _quantized_from(payload: dict[str, Any], where: Path) -> QuantizedWeights:
    block = payload["quantized"]
    try:
        bits = int(block["bits"])
        integers = {n: unpack_integers(p, bits, tuple(block["shapes"][n])) for n, p in block["packed"].items()}
        return QuantizedWeights(bits, integers, dict(block["scales"]), dict(block["floats"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ExportIntegrityError(f"{where}: malformed quantized weights ({type(exc).__name__}: {exc})") from None


def load_export_quantized(path: str | Path) -> QuantizedWeights | None:
    """The integers, scales and floats of a quantized export (None for an fp32 one)."""
    _, payload, pt_path = _load_pt(path)
    return _quantized_from(payload, pt_path) if "quantized" in payload else None


def load_export(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild an exported model (dequantizing a quantized one) in eval mode; returns (model, manifest).

    ``path``: the manifest, the ``.pt`` or their common stem. ExportError when a file is missing,
    ExportSchemaError for an unknown schema, ExportIntegrityError when the ``.pt`` does not match
    the manifest.
    """

    manifest, payload, pt_path = _load_pt(path)
    net = net_from_dict(payload["net"], where=f"{pt_path}: net")
    model = build_model(net)
    if "quantized" in payload:
        weights = _quantized_from(payload, pt_path)
        if weights.bits != manifest["bits"]:
            raise ExportIntegrityError(f"{pt_path}: {weights.bits}-bit weights, but the manifest says "
                                       f"{manifest['bits']} bits")
        if set(weights.integers) != set(quantized_names(model)):
            raise ExportIntegrityError(f"{pt_path}: quantized tensors {sorted(weights.integers)} are not the "
                                       f"weights of {label(net)}")
        state = {n: dequantize_tensor(q, weights.scales[n]) for n, q in weights.integers.items()}
        state.update(weights.floats)
    else:
        state = payload.get("model")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ExportIntegrityError(f"{pt_path}: weights do not fit {label(net)} ({str(exc)[:300]})") from None
    return model.eval(), manifest
