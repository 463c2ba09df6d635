"""Output folders and files written so that nothing is half-written and nothing is lost.

A command that writes a folder (a report, a stimulus set, an export) builds it in a staging
folder beside the target and swaps it in at the end. It may *replace* an existing folder only
when that folder is one it wrote itself: the staging folder receives a marker file naming the
kind of output and every file written, and an existing target is replaced only when its marker
names the same kind and the folder holds nothing the marker does not list. Anything else (a
folder of the user's, a ratings database dropped into a report folder, the input file itself
given as ``--out``) is refused with one line naming the path, before any work is done.

Every function takes ``error``, the calling package's exception class, so that the refusal
derives from that package's base exception like every other error it raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

MARKER = ".earshot-output.json"


def _files(folder: Path) -> set[str]:
    """Relative POSIX paths of everything in ``folder`` except the marker (folders count only
    when empty, so that an empty folder of the user's is not silently discarded either)."""
    found: set[str] = set()
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in files:
            found.add((rel / name).as_posix())
        if not dirs and not files and rel != Path("."):
            found.add(rel.as_posix() + "/")
    found.discard(MARKER)
    return found


def check_output_folder(out: Path, kind: str, error: type[Exception]) -> None:
    """Raise ``error`` unless ``out`` is absent, an empty folder, or a folder that a ``kind``
    command wrote and that holds nothing else."""
    out = Path(out)
    if out.is_symlink():
        raise error(f"{out}: expected a new folder for the {kind}, found a symbolic link; choose another path")
    if not out.exists():
        return
    if not out.is_dir():
        raise error(f"{out}: expected a folder for the {kind}, found a file (is it an input?); choose another path")
    marker = out / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        try:
            empty = not any(out.iterdir())
        except OSError as exc:
            raise error(f"{out}: cannot read the existing folder ({exc.strerror})") from exc
        if empty:
            return
        raise error(f"{out}: already exists and was not written by the {kind} command (no {MARKER}); "
                    f"refusing to replace it: choose a new folder or remove it yourself") from None
    except (OSError, ValueError) as exc:
        raise error(f"{out}/{MARKER}: expected the marker of a {kind}, found an unreadable file ({exc}); "
                    f"refusing to replace the folder") from exc
    if not isinstance(data, dict) or data.get("kind") != kind or not isinstance(data.get("files"), list):
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise error(f"{out}/{MARKER}: expected the marker of a {kind}, found one of {found!r}; "
                    f"refusing to replace the folder")
    extra = sorted(_files(out) - {str(f) for f in data["files"]})
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise error(f"{out}: holds {extra[0]!r}{more}, which the {kind} command did not write; "
                    f"refusing to replace the folder: move it elsewhere first")


def _unwritable(error: type[Exception], path: Path, exc: OSError) -> Exception:
    return error(f"{path}: cannot write there ({exc.strerror or exc})")


@contextlib.contextmanager
def output_folder(out: Path, kind: str, error: type[Exception], *, private: bool = False) -> Iterator[Path]:
    """Yield a staging folder beside ``out``; on a clean exit mark it as a ``kind`` and swap it
    in for ``out`` (refused up front, and again at the swap, by :func:`check_output_folder`).
    On any exception the staging folder is removed and ``out`` is left as it was.

    ``private``: the folder stays readable by its owner only (personal data); otherwise it gets
    the permissions the umask gives a new folder (a web server's user must read a stimulus set).
    """
    out = Path(out)
    check_output_folder(out, kind, error)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise _unwritable(error, out.parent, exc) from exc
    try:
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)
        yield staging
        files = sorted(_files(staging))
        (staging / MARKER).write_text(json.dumps({"kind": kind, "files": files}, indent=1) + "\n",
                                      encoding="utf-8")
        check_output_folder(out, kind, error)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, error):
            raise
        raise _unwritable(error, out, exc) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_file_atomic(path: Path, data: bytes | str, error: type[Exception], *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename, so a reader
    sees the old file or the new one, never half of it. ``mode`` (e.g. ``0o600`` for personal
    data) is set before any byte is written; by default the umask decides. An unwritable path is
    ``error`` naming it."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: expected a file to write, found a folder")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _unwritable(error, path, exc) from exc
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 is for secrets, not ordinary files
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _unwritable(error, path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
