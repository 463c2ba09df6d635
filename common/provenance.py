"""Where a result came from: the source's git commit, the versions of the software that computed
it, and the machine. Written into run folders, stimulus-set manifests, exports, reports and
benchmark headers, so that a number can be traced to the code and machine that produced it."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_SOURCE = Path(__file__).resolve().parent


def git_commit() -> str:
    """The checked-out commit of the source tree (``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=_SOURCE)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes (read in 1 MiB blocks): how exports, captures and run ids
    name the exact file they were made from."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def software_versions(distributions: tuple[str, ...]) -> dict[str, str]:
    """``{"python": ..., name: version}`` for each installed distribution (``unknown`` if absent),
    read from the installed metadata rather than ``__version__`` attributes, which some packages
    (pyloudnorm) lack or leave stale."""
    versions = {"python": platform.python_version()}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def cpu_model() -> str:
    """The CPU's model name, for benchmark headers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


__all__ = ["cpu_model", "git_commit", "software_versions"]
