"""Do Earshot's ``.nam`` exports load and sound the same in Neural Amp Modeler's own Python package?

``python -m models.export.nam_check`` (``make nam-check``) exports random-weight networks — NAM's standard
WaveNet at full width and cut to half width, a small gated WaveNet with other activations, NAM LSTMs of
one and two layers, and a slimmable WaveNet as one ``SlimmableContainer`` — renders a fixed input with
Earshot, then has each NAM environment (``neural-amp-modeler`` 0.12.x and 0.13.x, each in its own virtual
environment on the CPU torch) load every file it should read and render the same input with
:mod:`models.export.nam_package_render`. It passes when every NAM render is within
:data:`TOLERANCE` of Earshot's, sample for sample, and NAM's own ``_metadata_loudness``/``_metadata_gain``
of the loaded network equal the file's ``metadata.loudness``/``gain``.

Which NAM reads what: format 0.5.4 WaveNets NAM 0.12; 0.7.0 WaveNets NAM 0.13; LSTM files of both
versions both NAMs. NAM's Python package does not read containers (only NAM's C++ engine does), so each
container submodel is written out as a file of its own and loaded by NAM 0.13.

The NAM environments are made by ``make nam-venvs`` (pip only); nothing else is downloaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.export.nam_format import as_exported, export_nam, export_nam_container
from models.nets.nam_lstm import NamLSTM, NamLSTMConfig
from models.nets.slimmable import slim
from models.nets.wavenet import LayerArrayConfig, WaveNet, WaveNetConfig, build_wavenet, from_preset

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_VENVS = {"0.12": REPO / ".nam-venvs" / "0.12", "0.13": REPO / ".nam-venvs" / "0.13"}
NAM_SIDE = Path(__file__).with_name("nam_package_render.py")
TOLERANCE = 1e-5
"""Largest sample difference allowed between NAM's render and Earshot's (two float32 implementations
agree to a few 1e-7)."""
LOUDNESS_TOLERANCE_DB = 1e-4
GAIN_TOLERANCE = 1e-5
SAMPLE_RATE = 48000
INPUT_SECONDS = 2.0
INPUT_SEED = 20_150
CONTAINER_WIDTHS = (0.25, 0.5, 0.75, 1.0)
READERS = {"0.5.4": {"WaveNet": ("0.12",), "LSTM": ("0.12", "0.13")},
           "0.7.0": {"WaveNet": ("0.13",), "LSTM": ("0.12", "0.13")}}
"""Which NAM package versions must load a file, by format version and architecture."""


class NamCheckError(Exception):
    """A NAM environment could not run its part of the check."""


def _louder(model: WaveNet, factor: float) -> WaveNet:
    # Random weights and NAM's head scale of 0.02 give a quiet output; a louder one makes the 1e-5
    # comparison meaningful without changing the layout.
    with torch.no_grad():
        model.arrays[-1].head_rechannel.weight.mul_(factor)
    return model.eval()


def _standard() -> nn.Module:
    torch.manual_seed(1)
    return _louder(build_wavenet(from_preset("standard")), 10.0)


def _gated() -> nn.Module:
    torch.manual_seed(2)
    arrays = (LayerArrayConfig(input_size=1, channels=6, head_size=3, dilations=(1, 2, 4, 8), gated=True),
              LayerArrayConfig(input_size=6, channels=3, head_size=1, dilations=(1, 3, 9), kernel_size=2,
                               activation="Hardtanh", head_bias=True))
    return _louder(WaveNet(WaveNetConfig(arrays=arrays, head_scale=0.1)), 5.0)


def _lstm(layers: int, hidden: int, seed: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(seed)
        model = NamLSTM(NamLSTMConfig(hidden_size=hidden, num_layers=layers))
        with torch.no_grad():
            model.lstm.bias_ih_l0.add_(0.5)  # a clearly non-zero settled state
        return model.eval()
    return build


def _slimmable() -> nn.Module:
    torch.manual_seed(3)
    return _louder(build_wavenet(from_preset("slimmable")), 10.0)


@dataclass(frozen=True)
class Case:
    """One network exported in each of ``versions`` (at ``width``; None = as built)."""

    name: str
    build: Callable[[], nn.Module]
    width: float | None = None
    versions: tuple[str, ...] = ("0.5.4", "0.7.0")


CASES = (
    Case("wavenet_standard", _standard),
    Case("wavenet_standard_w50", _standard, width=0.5),
    Case("wavenet_gated", _gated),
    Case("lstm_1x8", _lstm(1, 8, 4)),
    Case("lstm_2x12", _lstm(2, 12, 5)),
)


def check_input() -> np.ndarray:
    """The fixed input every file renders: a seeded guitar excerpt, peak −6 dBFS, (time,) float32."""
    from models.dsp.signals import excerpt

    return excerpt("guitar", INPUT_SECONDS, SAMPLE_RATE, INPUT_SEED)


def _earshot_render(model: nn.Module, x: np.ndarray) -> np.ndarray:
    from models.inference.rendering import render_whole

    return render_whole(as_exported(model, SAMPLE_RATE), x)


def write_exports(folder: Path, x: np.ndarray) -> list[dict[str, Any]]:
    """Export every case and the container into ``folder`` with Earshot's renders of ``x``; returns one
    entry per file to check: ``{"id", "file", "version", "architecture", "readers", "loudness", "gain"}``."""
    entries = []
    for case in CASES:
        model = case.build()
        exported = model if case.width is None else slim(model, case.width).eval()
        reference = _earshot_render(exported, x)
        for version in case.versions:
            ident = f"{case.name}_v{version.replace('.', '')}"
            document = export_nam(model, folder / f"{ident}.nam", SAMPLE_RATE, width=case.width,
                                  nam_version=version, metadata={"name": ident})
            np.save(folder / f"{ident}.earshot.npy", reference)
            entries.append({"id": ident, "file": f"{ident}.nam", "version": version,
                            "architecture": document["architecture"],
                            "readers": list(READERS[version][document["architecture"]]),
                            "loudness": document["metadata"].get("loudness"),
                            "gain": document["metadata"].get("gain")})
    model = _slimmable()
    container = export_nam_container(model, folder / "wavenet_slimmable_container.nam", SAMPLE_RATE,
                                     CONTAINER_WIDTHS, metadata={"name": "slimmable container"})
    for width, sub in zip(CONTAINER_WIDTHS, container["config"]["submodels"], strict=True):
        ident = f"wavenet_slimmable_container_w{round(100 * width)}"
        # NAM's Python package reads no containers: each submodel is a complete 0.7.0 document of its own.
        (folder / f"{ident}.nam").write_text(json.dumps(sub["model"]))
        np.save(folder / f"{ident}.earshot.npy", _earshot_render(slim(model, width).eval(), x))
        entries.append({"id": ident, "file": f"{ident}.nam", "version": sub["model"]["version"],
                        "architecture": "SlimmableContainer submodel", "readers": ["0.13"],
                        "max_value": sub["max_value"],
                        "loudness": sub["model"]["metadata"].get("loudness"),
                        "gain": sub["model"]["metadata"].get("gain")})
    return entries


def run_nam(python: Path, folder: Path, entries: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Have the NAM environment's ``python`` load and render every entry it reads; returns its results.json."""
    job = {"input": "input.npy", "out": f"nam-{label}",
           "files": {e["id"]: e["file"] for e in entries if label in e["readers"]}}
    job_path = folder / f"job-{label}.json"
    job_path.write_text(json.dumps(job))
    done = subprocess.run([str(python), str(NAM_SIDE), str(job_path)], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise NamCheckError(f"NAM {label} ({python}) failed: {tail[0]}")
    return json.loads((folder / job["out"] / "results.json").read_text())


def compare(folder: Path, entries: list[dict[str, Any]], label: str, nam: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per file NAM ``label`` read: max |NAM − Earshot|, loudness and gain differences, pass/fail."""
    rows = []
    for entry in entries:
        if label not in entry["readers"]:
            continue
        result = nam["results"].get(entry["id"], {"error": "not rendered"})
        row = {"file": entry["file"], "nam": nam.get("nam_version") or label, "version": entry["version"],
               "architecture": entry["architecture"]}
        if "error" in result:
            rows.append({**row, "ok": False, "error": result["error"]})
            continue
        ours = np.load(folder / f"{entry['id']}.earshot.npy")
        theirs = np.load(folder / f"nam-{label}" / f"{entry['id']}.npy").reshape(-1)
        if theirs.shape != ours.shape:
            rows.append({**row, "ok": False, "error": f"NAM rendered {theirs.size} samples, Earshot {ours.size}"})
            continue
        diff = float(np.max(np.abs(theirs.astype(np.float64) - ours.astype(np.float64))))
        d_loud = _difference(entry["loudness"], result["loudness"])
        d_gain = _difference(entry["gain"], result["gain"])
        ok = diff <= TOLERANCE and d_loud <= LOUDNESS_TOLERANCE_DB and d_gain <= GAIN_TOLERANCE
        rows.append({**row, "ok": ok, "max_abs_diff": diff, "peak": float(np.max(np.abs(ours))),
                     "loudness_db": entry["loudness"], "loudness_diff_db": d_loud,
                     "gain": entry["gain"], "gain_diff": d_gain})
    return rows


def _difference(ours: float | None, theirs: float) -> float:
    if ours is None or not math.isfinite(theirs):
        return math.inf
    return abs(float(ours) - float(theirs))


def run_check(venvs: dict[str, Path] | None = None, keep: Path | None = None) -> tuple[bool, list[dict[str, Any]]]:
    """Export, render in every NAM environment and compare; returns (all passed, rows).

    ``venvs`` maps "0.12" and "0.13" to virtual environment folders (default ``.nam-venvs/<v>``);
    FileNotFoundError when one has no python. ``keep``: write the files there instead of a temporary folder."""
    venvs = dict(DEFAULT_VENVS if venvs is None else venvs)
    pythons = {label: Path(folder) / "bin" / "python" for label, folder in venvs.items()}
    for label, python in pythons.items():
        if not python.exists():
            raise FileNotFoundError(f"NAM {label} environment: {python} not found; create it with `make nam-venvs`")
    with tempfile.TemporaryDirectory(prefix="nam-check-") as temporary:
        folder = Path(keep) if keep is not None else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        x = check_input()
        np.save(folder / "input.npy", x)
        entries = write_exports(folder, x)
        rows = []
        for label, python in pythons.items():
            rows += compare(folder, entries, label, run_nam(python, folder, entries, label))
        (folder / "report.json").write_text(json.dumps(rows, indent=1))
    readers = {label for e in entries for label in e["readers"]}
    missing = sorted(readers - set(pythons))
    if missing:
        rows.append({"file": "-", "nam": ",".join(missing), "ok": False,
                     "error": f"no environment given for NAM {', '.join(missing)}"})
    return all(r["ok"] for r in rows), rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'file':46s} {'NAM':7s} {'max|diff|':>10s} {'peak':>7s} {'Δloud dB':>9s} {'Δgain':>9s}  result"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['file']:46s} {r['nam']:7s} {'':>10s} {'':>7s} {'':>9s} {'':>9s}  FAIL: {r['error']}")
        else:
            lines.append(f"{r['file']:46s} {r['nam']:7s} {r['max_abs_diff']:10.2e} {r['peak']:7.3f} "
                         f"{r['loudness_diff_db']:9.1e} {r['gain_diff']:9.1e}  {'ok' if r['ok'] else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.export.nam_check",
        description="Export random-weight WaveNets, NAM LSTMs and a SlimmableContainer as .nam, load and render "
        "them with NAM's Python package 0.12 and 0.13, and compare with Earshot's renders (max |diff| <= "
        f"{TOLERANCE:g}; metadata loudness within {LOUDNESS_TOLERANCE_DB:g} dB and gain within {GAIN_TOLERANCE:g} "
        "of NAM's own measure). Exit 0 when all agree, 1 when one does not, 2 when an environment is missing.")
    parser.add_argument("--venv-012", type=Path, default=DEFAULT_VENVS["0.12"], metavar="DIR",
                        help="virtual environment with neural-amp-modeler 0.12.x (default .nam-venvs/0.12)")
    parser.add_argument("--venv-013", type=Path, default=DEFAULT_VENVS["0.13"], metavar="DIR",
                        help="virtual environment with neural-amp-modeler 0.13.x (default .nam-venvs/0.13)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="write the exports, renders and report.json into DIR and keep them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.monotonic()
    try:
        passed, rows = run_check({"0.12": args.venv_012, "0.13": args.venv_013}, keep=args.keep)
    except FileNotFoundError as exc:
        print(f"nam-check: {exc}", file=sys.stderr)
        return 2
    except NamCheckError as exc:
        print(f"nam-check: {exc}", file=sys.stderr)
        return 1
    print(format_rows(rows))
    print(f"nam-check: {'passed' if passed else 'FAILED'}: {sum(r['ok'] for r in rows)}/{len(rows)} file loads agree "
          f"with Earshot ({time.monotonic() - start:.0f} s)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
