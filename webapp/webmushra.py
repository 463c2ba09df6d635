"""Import a webMUSHRA YAML configuration's ``mushra`` pages as an Earshot stimulus set.

webMUSHRA adds the reference itself as the hidden reference and, when asked
(``createAnchor35`` / ``createAnchor70``), creates the 3.5 kHz and 7 kHz low-pass anchors in the
browser. Here those become files: the hidden reference is a copy of the reference and the anchors
are rendered once with a zero-phase elliptic low-pass that meets the BS.1534-3 mask (pass-band
within 0.1 dB, at least 25 dB down at 8/7 of the cut-off and 50 dB down at 9/7).
Pages in nested lists (webMUSHRA's randomised groups) are flattened; other page types are skipped.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from scipy import signal

from common.anchors import AnchorError, anchor_sos
from common.outputs import output_folder
from common.stimulus_set import (
    ANCHOR_LOW,
    ANCHOR_MID,
    HIDDEN_REFERENCE,
    HIDDEN_REFERENCE_ID,
    LOW_ANCHOR_ID,
    MID_ANCHOR_ID,
    REFERENCE_FILE,
    SCHEMA,
    SYSTEM,
    condition_file,
    trial_folder,
    write_manifest,
)

from .errors import ImportFormatError

log = logging.getLogger(__name__)

ANCHORS = {"createAnchor35": (LOW_ANCHOR_ID, ANCHOR_LOW, 3500.0), "createAnchor70": (MID_ANCHOR_ID, ANCHOR_MID, 7000.0)}


def lowpass_anchor(audio: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """``audio`` (time,) or (time, channels) low-passed at ``cutoff_hz`` meeting the BS.1534-3 mask.

    The filter is the stimulus builder's (``common.anchors``), so an
    imported test's anchors are exactly those of a set built by the zoo.
    """
    try:
        sos = anchor_sos(float(cutoff_hz), int(sample_rate))
    except AnchorError as exc:
        raise ImportFormatError(str(exc)) from None
    return signal.sosfiltfilt(sos, audio, axis=0)


def _pages(pages) -> list[dict]:
    out = []
    for page in pages or []:
        if isinstance(page, list):
            out.extend(_pages(page))
        elif isinstance(page, dict):
            out.append(page)
    return out


def _source(base_dirs: list[Path], value, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ImportFormatError(f"{where}: expected an audio file path, found {value!r}")
    for base in base_dirs:
        candidate = (base / value).resolve()
        if candidate.is_file():
            return candidate
    raise ImportFormatError(f"{where}: {value!r} not found under {', '.join(str(b) for b in base_dirs)}")


def import_webmushra(config: Path, out: Path, base_dir: Path | None = None) -> Path:
    """Write the stimulus set ``out`` (must not exist) from the webMUSHRA YAML ``config``."""
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ImportFormatError(f"{config}: cannot read it ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ImportFormatError(f"{config}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or "pages" not in data:
        raise ImportFormatError(f"{config}: expected a webMUSHRA config with a 'pages' list")
    mushra = [p for p in _pages(data["pages"]) if p.get("type") == "mushra"]
    if not mushra:
        raise ImportFormatError(f"{config}: no page of type 'mushra' to import")
    if out.exists():
        raise ImportFormatError(f"{out}: already exists; choose a new stimulus set folder")
    # webMUSHRA resolves paths against its own root, usually the config folder's parent.
    bases = [base_dir] if base_dir else [config.parent, config.parent.parent]

    # Staged beside out and renamed into place whole (common.outputs), so a failed import leaves nothing.
    with output_folder(out, "webMUSHRA import", ImportFormatError) as tmp:
        trials = []
        sample_rates = set()
        seen_ids: set[str] = set()
        for i, page in enumerate(mushra):
            where = f"{config}: mushra page {i + 1}"
            trial_id = str(page.get("id") or f"trial{i + 1}")
            if trial_id in seen_ids:
                raise ImportFormatError(f"{where}: id {trial_id!r} is used twice")
            seen_ids.add(trial_id)
            folder = trial_folder(tmp, trial_id)
            folder.mkdir(parents=True)
            files = folder.relative_to(tmp).as_posix()
            ref_src = _source(bases, page.get("reference"), f"{where}.reference")
            audio, rate = sf.read(ref_src, always_2d=False)
            sample_rates.add(rate)
            reference = folder / REFERENCE_FILE
            shutil.copyfile(ref_src, reference) if ref_src.suffix.lower() == ".wav" else sf.write(reference, audio, rate)
            shutil.copyfile(reference, folder / condition_file(HIDDEN_REFERENCE_ID))
            conditions = [{"id": HIDDEN_REFERENCE_ID, "role": HIDDEN_REFERENCE,
                           "file": f"{files}/{condition_file(HIDDEN_REFERENCE_ID)}"}]
            for flag, (cid, role, cutoff) in ANCHORS.items():
                if page.get(flag):
                    sf.write(folder / condition_file(cid), lowpass_anchor(audio, rate, cutoff), rate, subtype="FLOAT")
                    conditions.append({"id": cid, "role": role, "file": f"{files}/{condition_file(cid)}"})
            stimuli = page.get("stimuli") or {}
            if not isinstance(stimuli, dict) or not stimuli:
                raise ImportFormatError(f"{where}.stimuli: expected a mapping of condition names to files")
            for name, path in stimuli.items():
                cid = str(name)
                if any(c["id"] == cid for c in conditions):
                    raise ImportFormatError(f"{where}.stimuli: condition name {cid!r} clashes with a generated one")
                src = _source(bases, path, f"{where}.stimuli.{cid}")
                dest = folder / condition_file(cid)
                if src.suffix.lower() == ".wav":
                    shutil.copyfile(src, dest)
                else:
                    x, r = sf.read(src)
                    sf.write(dest, x, r)
                sample_rates.add(sf.info(dest).samplerate)
                conditions.append({"id": cid, "role": SYSTEM, "file": f"{files}/{condition_file(cid)}"})
            trials.append(
                {
                    "id": trial_id,
                    "item": str(page.get("name") or trial_id),
                    "training": False,
                    "reference": f"{files}/{REFERENCE_FILE}",
                    "conditions": conditions,
                }
            )
        if len(sample_rates) != 1:
            raise ImportFormatError(f"{config}: all audio must share one sample rate, found {sorted(sample_rates)}")
        manifest = {
            "schema": SCHEMA,
            "sample_rate": sample_rates.pop(),
            "provenance": {"command": f"python -m webapp import-webmushra {config}", "source": "webMUSHRA", "test_id": data.get("testId")},
            "bs1534_enforced": False,
            "trials": trials,
        }
        write_manifest(tmp, manifest, ImportFormatError)
        title = str(data.get("testname") or out.name)
        (tmp / "test.yaml").write_text(yaml.safe_dump({"title": title}, allow_unicode=True), encoding="utf-8")
    log.info("imported %d mushra pages from %s into %s", len(trials), config, out)
    return out
