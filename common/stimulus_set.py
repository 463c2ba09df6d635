"""The stimulus-set format: ``stimuli/<set>/manifest.json`` and the audio files it lists.

A stimulus set is a folder: ``manifest.json`` names the trials (one MUSHRA page each: one item,
one group of systems), each trial's reference and conditions, and the facts the analysis needs;
the audio lies beside it. The stimulus builder and the web app's webMUSHRA import write sets, the
web app serves them, the checker and the analysis read them; all of them go through this module.

The manifest (schema 1), top level: ``schema``, ``sample_rate`` (Hz) and ``trials`` are required;
the builder adds ``name, bit_depth, duration_s, num_samples, loudness_target_lufs, peak_ceiling_dbfs,
fade_ms, bs1534_enforced, bs1534_exceeded, anchors, study, items, groups, provenance`` and others.
A trial: ``id`` (unique), ``item`` (the audio material; defaults to the id), ``group``, ``device``,
``training`` (true: a training page, never analysed), ``reference`` (file) and ``conditions``.
A condition: ``id`` (unique in its trial, one role across the set), ``role`` (:data:`ROLES`),
``file``; a system also carries the model facts (:data:`MODEL_FACTS`, at the top level of the
condition or under ``model``), ``objective`` (metric name → number) and, in sets built since model
files can be systems, ``origin`` (``source``: one of :data:`ORIGINS`, and the run or the file:
name, sha256 …).

Audio paths (:func:`audio_path`): a bare file name lives in ``audio/<trial id>/``; a name with a
folder is relative to the set folder. A path that leaves the set folder is refused.

Errors name the file and the key path (``…/manifest.json: trials[2].conditions[0].role: …``)
and are raised as the ``error`` class the caller passes, so that each package raises its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA = 1
SUPPORTED_SCHEMAS = (SCHEMA,)
MANIFEST = "manifest.json"
AUDIO_FOLDER = "audio"

HIDDEN_REFERENCE = "hidden_reference"
ANCHOR_LOW = "anchor_low"
ANCHOR_MID = "anchor_mid"
SYSTEM = "system"
ROLES = (HIDDEN_REFERENCE, ANCHOR_LOW, ANCHOR_MID, SYSTEM)
"""Every condition has one: the hidden reference, the 3.5 kHz (low) and 7 kHz (mid) anchors of
BS.1534-3, or a system under test."""

ROLE_ORDER = {HIDDEN_REFERENCE: 0, SYSTEM: 1, ANCHOR_MID: 2, ANCHOR_LOW: 3}
"""The order in which figures and tables list conditions by role: the hidden reference, the
systems, then the anchors from least to most impaired."""

HIDDEN_REFERENCE_ID = "hidden_reference"
LOW_ANCHOR_ID = "anchor_3k5"
MID_ANCHOR_ID = "anchor_7k"
STANDARD_CONDITIONS = {HIDDEN_REFERENCE_ID: HIDDEN_REFERENCE, LOW_ANCHOR_ID: ANCHOR_LOW, MID_ANCHOR_ID: ANCHOR_MID}
"""The condition ids (→ roles) every set built or imported by Earshot uses for the hidden
reference and the two anchors."""

REFERENCE_FILE = "reference.wav"

MODEL_FACTS = ("run_id", "dataset", "arch", "model", "layers", "recipe", "variant", "teacher", "bits", "width",
               "params", "bytes", "macs_per_sample", "rtf_offline", "rtf_stream")
"""The facts a system condition carries about the model that rendered it (a study run's from its
metrics.json; a model file's counted from the network and, ``rtf_offline``, measured by the
builder), in the order the builder writes them."""

ORIGIN_STUDY = "study"
ORIGIN_NAM = "nam"
ORIGIN_EXPORT = "export"
ORIGINS = (ORIGIN_STUDY, ORIGIN_NAM, ORIGIN_EXPORT)
"""What rendered a system, its condition's ``origin.source``: a run of the trained study, NAM's
``.nam`` file or an Earshot export (``<name>.pt`` + ``<name>.json``)."""


def condition_file(condition_id: str) -> str:
    """The bare file name of a condition's audio (it lives in ``audio/<trial id>/``)."""
    return f"{condition_id}.wav"


def trial_folder(folder: Path | str, trial_id: str) -> Path:
    """Where a trial's bare file names live: ``<set>/audio/<trial id>``."""
    return Path(folder) / AUDIO_FOLDER / trial_id


def audio_path(folder: Path | str, trial_id: str, name: str) -> Path:
    """The file a manifest's ``name`` denotes in trial ``trial_id`` of the set in ``folder``
    (not resolved, not checked: see :func:`resolve_audio`)."""
    rel = Path(name)
    return Path(folder) / rel if len(rel.parts) > 1 else trial_folder(folder, trial_id) / rel


def resolve_audio(folder: Path | str, trial_id: str, name: object, where: str, error: type[Exception]) -> Path:
    """:func:`audio_path` resolved, or ``error`` naming ``where`` when ``name`` is no file name or
    the path leads outside the set folder (a crafted manifest cannot reach any other file)."""
    if not isinstance(name, str) or not name:
        raise error(f"{where}: expected a file name, found {name!r}")
    root = Path(folder).resolve()
    resolved = audio_path(folder, trial_id, name).resolve()
    if Path(name).is_absolute() or root not in resolved.parents:
        raise error(f"{where}: {name!r} points outside the stimulus set folder {folder}")
    return resolved


def manifest_text(manifest: dict[str, Any]) -> str:
    """The bytes of ``manifest.json`` (as text): keys in the order given, one-space indent, a
    final newline."""
    return json.dumps(manifest, indent=1) + "\n"


def write_manifest(folder: Path | str, manifest: dict[str, Any], error: type[Exception]) -> Path:
    """Check ``manifest`` (:func:`validate_manifest`) and write it as ``<folder>/manifest.json``."""
    path = Path(folder) / MANIFEST
    validate_manifest(manifest, path, error)
    path.write_text(manifest_text(manifest), encoding="utf-8")
    return path


def read_manifest(source: Path | str, error: type[Exception]) -> tuple[Path, dict[str, Any]]:
    """``(path, manifest)`` of the set folder ``source`` (or its manifest file), with the top level
    checked: a JSON object of a supported ``schema``, a positive integer ``sample_rate`` and a
    non-empty ``trials`` list. The trials themselves are checked by :func:`validate_manifest`."""
    path = Path(source)
    if path.is_dir():
        path = path / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path.parent}: no {MANIFEST} (expected a stimulus set folder, stimuli/<set>/)") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from None
    _check_top_level(data, path, error)
    return path, data


def _check_top_level(data: object, path: Path, error: type[Exception]) -> None:
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object at the top level")
    schema = data.get("schema")
    if schema not in SUPPORTED_SCHEMAS or isinstance(schema, bool):
        raise error(f"{path}: schema: expected one of {list(SUPPORTED_SCHEMAS)}, found {schema!r}")
    rate = data.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise error(f"{path}: sample_rate: expected a positive integer, found {rate!r}")
    trials = data.get("trials")
    if not isinstance(trials, list) or not trials:
        raise error(f"{path}: trials: expected a non-empty list, found {trials!r}")


def _string(entry: dict, key: str, where: str, error: type[Exception]) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise error(f"{where}.{key}: expected a non-empty string, found {value!r}")
    return value


def validate_manifest(data: object, path: Path | str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``path`` and the key path of the first thing in ``data`` that breaks
    the format: the top level (see :func:`read_manifest`), then every trial and condition (ids,
    roles, file names, ``training``, ``objective``). Audio files are not looked at."""
    path = Path(path)
    _check_top_level(data, path, error)
    trial_ids: set[str] = set()
    role_of: dict[str, str] = {}
    for i, trial in enumerate(data["trials"]):
        where = f"{path}: trials[{i}]"
        if not isinstance(trial, dict):
            raise error(f"{where}: expected an object, found {trial!r}")
        trial_id = _string(trial, "id", where, error)
        if trial_id in trial_ids:
            raise error(f"{where}.id: {trial_id!r} is used by another trial")
        trial_ids.add(trial_id)
        if not isinstance(trial.get("training", False), bool):
            raise error(f"{where}.training: expected true or false, found {trial['training']!r}")
        if not isinstance(trial.get("reference"), str) or not trial["reference"]:
            raise error(f"{where}.reference: expected a file name, found {trial.get('reference')!r}")
        conditions = trial.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise error(f"{where}.conditions: expected a non-empty list")
        seen: set[str] = set()
        for j, cond in enumerate(conditions):
            cw = f"{where}.conditions[{j}]"
            if not isinstance(cond, dict):
                raise error(f"{cw}: expected an object, found {cond!r}")
            cid = _string(cond, "id", cw, error)
            if cid in seen:
                raise error(f"{cw}.id: {cid!r} appears twice in trial {trial_id!r}")
            seen.add(cid)
            role = cond.get("role")
            if role not in ROLES:
                raise error(f"{cw}.role: expected one of {list(ROLES)}, found {role!r}")
            if role_of.setdefault(cid, role) != role:
                raise error(f"{cw}.role: condition {cid!r} is {role!r} here but {role_of[cid]!r} in an earlier trial")
            if not isinstance(cond.get("file"), str) or not cond["file"]:
                raise error(f"{cw}.file: expected a file name, found {cond.get('file')!r}")
            objective = cond.get("objective") or {}
            if not isinstance(objective, dict):
                raise error(f"{cw}.objective: expected an object of metric → number")
            for name, value in objective.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise error(f"{cw}.objective.{name}: expected a number, found {value!r}")


def model_facts(condition: dict[str, Any]) -> dict[str, Any]:
    """The model facts of a condition (None where absent), from its ``model`` object when it has
    one, else from the condition itself."""
    source = condition.get("model") if isinstance(condition.get("model"), dict) else condition
    return {key: source.get(key) for key in MODEL_FACTS}


def system_origin(condition: dict[str, Any]) -> str | None:
    """What rendered a system condition (:data:`ORIGINS`): its ``origin.source``; for a set built
    before conditions had an origin, ``study`` when it names a run, else None."""
    origin = condition.get("origin")
    if isinstance(origin, dict) and isinstance(origin.get("source"), str):
        return origin["source"]
    return ORIGIN_STUDY if model_facts(condition).get("run_id") else None
