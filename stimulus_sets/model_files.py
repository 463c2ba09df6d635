"""Models read from files, as systems and references of a stimulus set: NAM's ``.nam`` (a capture,
at NAM's ``slim`` value where the file has slim levels: a ``SlimmableContainer``'s submodel, a
slimmable 0.7 WaveNet's channels) and Earshot exports (``<name>.pt`` + ``<name>.json``). ``width``
cuts a network of the zoo's architectures as its exports at a width are cut
(:func:`models.nets.slimmable.slim`: the first channels of every weight), for an export only at a
width its manifest allows.

A loaded file gives the builder what a trained run's checkpoint gives it — the network, its sample
rate and knob names — so :mod:`stimulus_sets.build` renders, latency-aligns and levels it with the
same code. It also gives the model facts of :data:`common.stimulus_set.MODEL_FACTS` (the
real-time factor is measured by the builder, :func:`models.studies.cost.measure_models`) and an
``origin`` block naming the file (name, sha256, bytes; the ``.nam`` version and architecture, or
the export's name and the run it came from).

Facts: ``params`` counts the network's trainable values (:func:`models.nets.architectures.parameter_count`);
``macs_per_sample`` is the registered architecture's count, or the network's own
``macs_per_sample()`` for a network no architecture registers (None when it has neither);
``bytes`` is the weights' size as the zoo counts it: 4 per value in fp32, or the packed integers,
per-row scales and fp32 rest of a quantized export (:attr:`models.nets.quantize.QuantizedWeights.packed_bytes`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from common.stimulus_set import MODEL_FACTS
from models.errors import ModelsError
from models.export.bundle import load_export
from models.export.nam_read import load_nam_at
from models.nets.architectures import find, fp32_bytes, parameter_count
from models.nets.quantize import quantize_model
from models.nets.slimmable import slim
from stimulus_sets.config import NAM, ModelFileSpec

from .errors import StimulusConfigError

NAM_DESCRIPTION_KEYS = ("name", "modeled_by", "gear_type", "gear_make", "gear_model", "tone_type")
"""The descriptive ``metadata`` keys of a ``.nam`` copied into the system's origin."""
WIDTH_TOLERANCE = 1e-6  # an export lists its allowed widths rounded to 6 decimals


@dataclass(frozen=True)
class LoadedModel:
    """A system or reference model as the builder renders it: the network (eval mode), ``payload``
    (``sample_rate`` in Hz and ``knob_names``, as a checkpoint holds them), its model ``facts``
    (every key of :data:`MODEL_FACTS`) and its ``origin`` (``source``: ``study``, ``nam`` or
    ``export``, and what names the model there). ``name`` is how the manifest names it (a run id,
    or ``nam:amp.nam``); ``describe`` is how errors name it."""

    name: str
    describe: str
    model: nn.Module
    payload: dict[str, Any]
    facts: dict[str, Any]
    origin: dict[str, Any]

    @property
    def sample_rate(self) -> Any:
        return self.payload.get("sample_rate")

    @property
    def knob_names(self) -> list[str]:
        return list(self.payload.get("knob_names") or [])


def file_key(spec: ModelFileSpec) -> str:
    """One key per distinct model: the same file at the same cut loads and renders once."""
    return f"{spec.source}:{Path(spec.path).resolve()}|slim={spec.slim}|width={spec.width}"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def network_facts(model: nn.Module) -> dict[str, Any]:
    """``arch``, ``model`` (label), ``layers``, ``params``, ``macs_per_sample`` of a network: a
    network that counts its own multiply-adds (``model.macs_per_sample()``, e.g. NAM's general
    WaveNet read from a 0.6/0.7 file) is labelled by its class; one of a registered architecture
    is counted and labelled by it."""
    config = getattr(model, "config", None)
    own = getattr(model, "macs_per_sample", None)
    architecture = find(getattr(config, "arch", None)) if config is not None else None
    facts: dict[str, Any] = {"params": parameter_count(model)}
    if architecture is not None and not callable(own):
        facts.update(arch=architecture.name, model=architecture.label(config), layers=architecture.size_label(config),
                     macs_per_sample=int(architecture.macs_per_sample(config)))
    else:
        facts.update(arch=None, model=type(model).__name__, layers=None,
                     macs_per_sample=int(own()) if callable(own) else None)
    return facts


def _facts(**given: Any) -> dict[str, Any]:
    return {key: given.get(key) for key in MODEL_FACTS}


def load_model_file(spec: ModelFileSpec, where: str) -> LoadedModel:
    """Load ``spec`` (``where`` names it in errors: ``group 'g', system 'capture'``). A missing,
    unreadable or unusable file, or a cut the file does not allow, is a one-line
    :class:`StimulusConfigError` naming the key and the file."""
    path = Path(spec.path)
    if not path.is_file():
        raise StimulusConfigError(f"{where}: {spec.source}: expected a {'.nam' if spec.source == NAM else 'export'} "
                                  f"file, found {'a folder' if path.is_dir() else 'nothing'} at {path}")
    return _load_nam(spec, path, where) if spec.source == NAM else _load_export(spec, path, where)


def _load_nam(spec: ModelFileSpec, path: Path, where: str) -> LoadedModel:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StimulusConfigError(f"{where}: nam: {path} cannot be read ({exc.strerror or exc})") from None
    try:
        # slim: NAM's slim value; width: the fraction of channels kept (see load_nam_at).
        model, info = load_nam_at(path, slim=spec.slim, width=spec.width)
    except ModelsError as exc:
        raise StimulusConfigError(f"{where}: nam: {exc}") from None
    rate = float(info["sample_rate"])
    if not rate.is_integer():
        raise StimulusConfigError(f"{where}: nam: {path} runs at {rate} Hz; expected a whole number of Hz")
    metadata = info.get("metadata") if isinstance(info.get("metadata"), dict) else {}
    facts = _facts(**network_facts(model), bits=32, width=1.0 if spec.width is None else spec.width,
                   bytes=fp32_bytes(model))
    origin = {"source": spec.source, "file": path.name, "path": str(spec.path), "sha256": sha256_of(data),
              "file_bytes": len(data), "nam_version": info.get("version"), "nam_architecture": info.get("architecture"),
              "sample_rate": int(rate), "slim": spec.slim, "width": spec.width,
              **({"nam_submodel": info["submodel"]} if "submodel" in info else {}),
              **{f"nam_{key}": metadata[key] for key in NAM_DESCRIPTION_KEYS if metadata.get(key) is not None}}
    return LoadedModel(spec.label, f"model {spec.label}", model.eval(), {"sample_rate": int(rate), "knob_names": []},
                       facts, origin)


def _cut(model: nn.Module, width: float, where: str) -> nn.Module:
    """``model`` cut to ``width`` as the zoo cuts a slimmable network (the first channels of every
    weight, :func:`models.nets.slimmable.slim`), as its exports at a width are cut."""
    if find(getattr(getattr(model, "config", None), "arch", None)) is None:
        raise StimulusConfigError(f"{where}: width: cuts a network of the zoo's architectures (a WaveNet in NAM's "
                                  f"0.5.x layout, an LSTM), found a {type(model).__name__}; a slimmable .nam of a "
                                  "newer layout has its own levels: use 'slim'")
    try:
        return slim(model, width).eval()
    except ModelsError as exc:
        raise StimulusConfigError(f"{where}: width: {exc}") from None


def _load_export(spec: ModelFileSpec, path: Path, where: str) -> LoadedModel:
    try:
        model, manifest = load_export(path)
    except ModelsError as exc:
        raise StimulusConfigError(f"{where}: export: {exc}") from None
    width = 1.0 if spec.width is None else spec.width
    if not math.isclose(width, 1.0, abs_tol=WIDTH_TOLERANCE):
        allowed = (manifest.get("widths") or {}).get("allowed") or [1.0]
        if not any(math.isclose(width, w, abs_tol=WIDTH_TOLERANCE) for w in allowed):
            raise StimulusConfigError(f"{where}: width: expected one of the widths the export {path.name} allows "
                                      f"{allowed}, found {width:g}")
        model = _cut(model, width, where)
    bits = int(manifest["bits"])
    # A quantized export's size is its packed integers, row scales and fp32 rest: shapes alone
    # decide it, so quantizing the (cut) network again gives the size of the integers it renders.
    size = fp32_bytes(model) if bits == 32 else quantize_model(model, bits).packed_bytes
    provenance = manifest.get("provenance") or {}
    facts = _facts(**network_facts(model), bits=bits, width=width, bytes=size, dataset=provenance.get("dataset"),
                   recipe=provenance.get("recipe"), variant=provenance.get("variant"),
                   teacher=provenance.get("teacher"))
    files = manifest.get("files") or {}
    origin = {"source": spec.source, "file": files.get("weights"), "manifest": f"{manifest.get('name')}.json",
              "path": str(spec.path), "sha256": provenance.get("weights_sha256"),
              "name": manifest.get("name"), "label": (manifest.get("architecture") or {}).get("label"),
              "run_id": provenance.get("run_id"), "width": spec.width}
    payload = {"sample_rate": int(manifest["sample_rate"]),
               "knob_names": list((manifest.get("architecture") or {}).get("knob_names") or [])}
    return LoadedModel(spec.label, f"model {spec.label}", model, payload, facts, origin)
