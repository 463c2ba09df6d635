"""A webMUSHRA configuration (``webmushra.yaml``) for a stimulus set, for people who run webMUSHRA.

webMUSHRA resolves audio paths against its own root folder. The file assumes the set folder is
copied to ``configs/resources/audio/<set>/`` inside webMUSHRA and the YAML to ``configs/``, then
opened as ``?config=<set>.yaml``. The set's anchors are files (zero-phase, meeting the BS.1534-3
mask), so webMUSHRA's own anchor generation is switched off and the anchors appear as ordinary
stimuli under their condition ids; webMUSHRA adds the hidden reference itself. Training trials come
first, then the rated trials in a randomised block.
"""

from __future__ import annotations

from typing import Any

import yaml

from common.stimulus_set import AUDIO_FOLDER, HIDDEN_REFERENCE

WEBMUSHRA_AUDIO_ROOT = "configs/resources/audio"


def _page(trial: dict[str, Any], prefix: str, number: int, total: int) -> dict[str, Any]:
    folder = f"{prefix}{AUDIO_FOLDER}/{trial['id']}/"
    stimuli = {c["id"]: folder + c["file"] for c in trial["conditions"] if c["role"] != HIDDEN_REFERENCE}
    name = "Training" if trial.get("training") else f"Trial {number} of {total}"
    return {
        "type": "mushra",
        "id": trial["id"],
        "name": name,
        "content": "Rate how each sound compares with the reference. One of them is the reference itself; "
                   "rate it 100. The worst need not be rated Bad.",
        "showWaveform": True,
        "enableLooping": True,
        "strict": True,
        "reference": folder + trial["reference"],
        "createAnchor35": False,
        "createAnchor70": False,
        "randomize": True,
        "showConditionNames": False,
        "stimuli": stimuli,
    }


def webmushra_config(manifest: dict[str, Any], prefix: str | None = None) -> dict[str, Any]:
    """The webMUSHRA config for ``manifest``; audio paths start with ``prefix`` (default
    ``configs/resources/audio/<set>/``)."""
    name = str(manifest.get("name") or "stimuli")
    prefix = prefix if prefix is not None else f"{WEBMUSHRA_AUDIO_ROOT}/{name}/"
    trials = manifest["trials"]
    training = [t for t in trials if t.get("training")]
    rated = [t for t in trials if not t.get("training")]
    first = rated[0] if rated else trials[0]
    pages: list[Any] = [
        {"type": "generic", "id": "welcome", "name": "Welcome",
         "content": "A MUSHRA listening test (ITU-R BS.1534-3). Please use headphones in a quiet room."},
        {"type": "volume", "id": "volume", "name": "Volume", "content": "Set a comfortable level; keep it for the whole test.",
         "stimulus": f"{prefix}{AUDIO_FOLDER}/{first['id']}/{first['reference']}", "defaultVolume": 0.5},
    ]
    pages += [_page(t, prefix, 0, 0) for t in training]
    pages.append(["random", *[_page(t, prefix, i, len(rated)) for i, t in enumerate(rated, start=1)]])
    pages.append({"type": "finish", "name": "Thank you", "content": "Thank you for taking part.",
                  "showResults": False, "writeResults": True})
    return {"testname": name, "testId": name, "bufferSize": 2048, "stopOnErrors": True,
            "showButtonPreviousPage": False, "remoteService": "service/write.php", "pages": pages}


def webmushra_yaml(manifest: dict[str, Any], prefix: str | None = None) -> str:
    """:func:`webmushra_config` as YAML text (keys in webMUSHRA's documented order)."""
    return yaml.safe_dump(webmushra_config(manifest, prefix), sort_keys=False, allow_unicode=True)
