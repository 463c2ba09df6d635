"""The stimulus-set format: manifest text, reading and validation errors, the audio-path rule."""

import json

import pytest

from common import stimulus_set as ss


class FormatError(Exception):
    pass


def _manifest() -> dict:
    # The demo set's shape, cut down: one trial, hidden reference, one anchor, one system.
    return {
        "schema": 1,
        "name": "demo",
        "sample_rate": 48000,
        "bs1534_enforced": True,
        "bs1534_exceeded": [],
        "trials": [
            {
                "id": "guitar_S-16-8",
                "item": "guitar",
                "device": "overdrive",
                "group": "S-16-8",
                "training": False,
                "reference": "reference.wav",
                "reference_gain_db": -1.5,
                "trial_gain_db": 0.0,
                "conditions": [
                    {"id": "hidden_reference", "role": "hidden_reference", "file": "hidden_reference.wav",
                     "gain_db": -1.5},
                    {"id": "anchor_7k", "role": "anchor_mid", "file": "anchor_7k.wav", "gain_db": 0.25},
                    {"id": "distilled", "role": "system", "file": "distilled.wav", "gain_db": 0.125,
                     "run_id": "r1", "layers": [16, 8], "width": None, "objective": {"esr": 0.02}},
                ],
            }
        ],
    }


EXPECTED = """{
 "schema": 1,
 "name": "demo",
 "sample_rate": 48000,
 "bs1534_enforced": true,
 "bs1534_exceeded": [],
 "trials": [
  {
   "id": "guitar_S-16-8",
   "item": "guitar",
   "device": "overdrive",
   "group": "S-16-8",
   "training": false,
   "reference": "reference.wav",
   "reference_gain_db": -1.5,
   "trial_gain_db": 0.0,
   "conditions": [
    {
     "id": "hidden_reference",
     "role": "hidden_reference",
     "file": "hidden_reference.wav",
     "gain_db": -1.5
    },
    {
     "id": "anchor_7k",
     "role": "anchor_mid",
     "file": "anchor_7k.wav",
     "gain_db": 0.25
    },
    {
     "id": "distilled",
     "role": "system",
     "file": "distilled.wav",
     "gain_db": 0.125,
     "run_id": "r1",
     "layers": [
      16,
      8
     ],
     "width": null,
     "objective": {
      "esr": 0.02
     }
    }
   ]
  }
 ]
}
"""


def test_written_manifest_is_byte_for_byte_the_demo_format(tmp_path):
    path = ss.write_manifest(tmp_path, _manifest(), FormatError)
    assert path == tmp_path / "manifest.json"
    assert path.read_bytes() == EXPECTED.encode("utf-8")
    assert ss.read_manifest(tmp_path, FormatError) == (path, _manifest())


def test_constants():
    assert ss.SCHEMA == 1
    assert ss.ROLES == ("hidden_reference", "anchor_low", "anchor_mid", "system")
    assert ss.STANDARD_CONDITIONS == {"hidden_reference": "hidden_reference", "anchor_3k5": "anchor_low",
                                      "anchor_7k": "anchor_mid"}
    assert ss.condition_file("anchor_7k") == "anchor_7k.wav"


def test_audio_path_rule(tmp_path):
    assert ss.audio_path(tmp_path, "t1", "x.wav") == tmp_path / "audio" / "t1" / "x.wav"
    assert ss.audio_path(tmp_path, "t1", "audio/t1/x.wav") == tmp_path / "audio" / "t1" / "x.wav"
    assert ss.resolve_audio(tmp_path, "t1", "other/y.wav", "here", FormatError) == (tmp_path / "other" / "y.wav").resolve()
    for name in ("../../x.wav", "/etc/passwd", "audio/../../x.wav"):
        with pytest.raises(FormatError, match=r"^here: .* points outside the stimulus set folder"):
            ss.resolve_audio(tmp_path, "t1", name, "here", FormatError)
    with pytest.raises(FormatError, match="here: expected a file name, found 3"):
        ss.resolve_audio(tmp_path, "t1", 3, "here", FormatError)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FormatError, match=f"^{tmp_path}: no manifest.json"):
        ss.read_manifest(tmp_path, FormatError)
    path = tmp_path / "manifest.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(FormatError, match=f"^{path}: not valid JSON"):
        ss.read_manifest(tmp_path, FormatError)
    path.write_text('{"schema": 2, "sample_rate": 48000, "trials": []}', encoding="utf-8")
    with pytest.raises(FormatError, match=rf"^{path}: schema: expected one of \[1\], found 2$"):
        ss.read_manifest(path, FormatError)
    path.write_text('{"schema": 1, "sample_rate": true, "trials": []}', encoding="utf-8")
    with pytest.raises(FormatError, match=f"^{path}: sample_rate: expected a positive integer, found True$"):
        ss.read_manifest(path, FormatError)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["trials"].append(dict(m["trials"][0])), r"trials\[1\]\.id: 'guitar_S-16-8' is used by another trial"),
        (lambda m: m["trials"][0].update(training="no"), r"trials\[0\]\.training: expected true or false"),
        (lambda m: m["trials"][0].pop("reference"), r"trials\[0\]\.reference: expected a file name, found None"),
        (lambda m: m["trials"][0].update(conditions=[]), r"trials\[0\]\.conditions: expected a non-empty list"),
        (lambda m: m["trials"][0]["conditions"][1].update(role="anchor"),
         r"trials\[0\]\.conditions\[1\]\.role: expected one of \['hidden_reference', 'anchor_low', 'anchor_mid', "
         r"'system'\], found 'anchor'"),
        (lambda m: m["trials"][0]["conditions"][2].update(id="anchor_7k"),
         r"trials\[0\]\.conditions\[2\]\.id: 'anchor_7k' appears twice in trial 'guitar_S-16-8'"),
        (lambda m: m["trials"][0]["conditions"][2].update(file=""), r"trials\[0\]\.conditions\[2\]\.file: expected a file name"),
        (lambda m: m["trials"][0]["conditions"][2].update(objective={"esr": "low"}),
         r"trials\[0\]\.conditions\[2\]\.objective\.esr: expected a number, found 'low'"),
    ],
)
def test_validation_names_the_file_and_the_key_path(tmp_path, change, message):
    manifest = json.loads(json.dumps(_manifest()))
    change(manifest)
    with pytest.raises(FormatError, match=f"^{tmp_path / 'manifest.json'}: {message}"):
        ss.write_manifest(tmp_path, manifest, FormatError)
    assert not (tmp_path / "manifest.json").exists()


def test_a_condition_keeps_one_role_across_the_set(tmp_path):
    manifest = _manifest()
    second = json.loads(json.dumps(manifest["trials"][0]))
    second["id"] = "bass_S-16-8"
    second["conditions"][2]["role"] = "anchor_low"
    manifest["trials"].append(second)
    with pytest.raises(FormatError, match=r"trials\[1\]\.conditions\[2\]\.role: condition 'distilled' is 'anchor_low' "
                                          r"here but 'system' in an earlier trial"):
        ss.validate_manifest(manifest, "m.json", FormatError)


def test_model_facts_from_the_condition_or_its_model_object():
    facts = ss.model_facts({"id": "x", "run_id": "r1", "bits": 8})
    assert facts["run_id"] == "r1" and facts["bits"] == 8 and facts["arch"] is None
    assert list(facts) == list(ss.MODEL_FACTS)
    assert ss.model_facts({"id": "x", "model": {"run_id": "r2"}})["run_id"] == "r2"
