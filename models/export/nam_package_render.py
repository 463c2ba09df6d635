"""Render ``.nam`` files with Neural Amp Modeler's own Python package: the NAM side of
:mod:`models.export.nam_check`.

Run by the Python of a virtual environment holding ``neural-amp-modeler`` (and torch), never imported by
Earshot: it imports only the standard library, NumPy, torch and ``nam``, so that NAM's package is the
independent implementation. Usage::

    NAM_VENV/bin/python models/export/nam_package_render.py JOB.json

``JOB.json``: ``{"input": "input.npy", "files": {"ID": "file.nam", ...}, "out": "folder"}`` (paths relative
to the job file). For every file: load it with ``nam.models._from_nam.init_from_nam`` (what NAM 0.12 and
0.13 use to read a ``.nam``), render the input whole from the file's start state (``model(x)``: NAM pads
a WaveNet's start with zeros, an LSTM starts from the file's state) and measure
``_metadata_loudness()`` / ``_metadata_gain()``. Writes ``out/ID.npy`` and ``out/results.json``
(``{"nam_version", "torch_version", "results": {ID: {"loudness", "gain"} or {"error"}}}``).
"""

import json
import sys
import traceback
from pathlib import Path

import numpy as np
import torch


def main(job_path: str) -> int:
    import nam
    from nam.models._from_nam import init_from_nam

    job_file = Path(job_path)
    job = json.loads(job_file.read_text())
    root = job_file.parent
    out = root / job["out"]
    out.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(np.load(root / job["input"]).astype(np.float32))
    torch.set_num_threads(1)
    results = {}
    for name, file in job["files"].items():
        try:
            document = json.loads((root / file).read_text())
            model = init_from_nam(document).eval()
            with torch.no_grad():
                y = model(x)
                loudness = float(model._metadata_loudness())
                gain = float(model._metadata_gain())
            np.save(out / f"{name}.npy", y.detach().cpu().numpy().astype(np.float32))
            results[name] = {"loudness": loudness, "gain": gain}
        except Exception as exc:  # a refusal is a result to report, not a crash of the whole check
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            results[name] = {"error": last[:400]}
    version = getattr(nam, "__version__", None)
    (out / "results.json").write_text(json.dumps({"nam_version": version, "torch_version": torch.__version__,
                                                  "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: NAM_VENV/bin/python nam_package_render.py JOB.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
