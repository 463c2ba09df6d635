"""Processes sharing a study folder: one study process per folder, no worker outliving its parent.

Two ``study`` processes on one folder would both train every missing run (each sees it missing)
and write each epoch twice; :func:`study_lock` makes the second one fail at once, naming the
first. The lock is an ``flock`` on ``study.lock`` in the study folder, so the kernel releases it
when its holder dies however it dies (SIGKILL included): there is never a stale lock to delete.

Worker processes of ``study --jobs N`` are started by :func:`watch_parent` (their pool's
initializer) so that they end when the study process does: on Linux the kernel sends them
SIGTERM when it dies (``PR_SET_PDEATHSIG``); elsewhere, and as a second guard, a thread notices
that their parent process has changed and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from models.errors import OutputError, StudyBusyError

log = logging.getLogger(__name__)

LOCK_FILE = "study.lock"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 1.0

# Folders this process holds the lock of (resolved path → depth): the CLI takes the lock before
# it prints anything and run_study takes it again, and a second flock of the same file through
# another descriptor would conflict with the first.
_held: dict[Path, int] = {}
_held_guard = threading.Lock()


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"process {info['pid']} on {info['host']} ({info['command']}, since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "another process (it has not written its details yet)"


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[Path]:
    """Hold the study folder (created if missing) for this process; StudyBusyError naming the
    holder when another process holds it, OutputError when the folder cannot be created."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key = folder.resolve()
    except OSError as exc:
        raise OutputError(f"{folder}: expected a study folder that can be created, found "
                          f"{exc.strerror or exc} (is a part of the path a file?)") from None
    with _held_guard:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield folder / LOCK_FILE
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no flock
        log.warning("%s: cannot lock the study folder on this platform; run one study process at a time", folder)
        yield folder / LOCK_FILE
        return
    path = folder / LOCK_FILE
    try:
        # O_CREAT without O_TRUNC: the holder's details must survive a failed attempt to lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the study's lock file ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with open(path, encoding="utf-8", errors="replace") as handle:
                holder = _holder(handle.read())
            raise StudyBusyError(f"{folder}: expected a study folder no other process is using, found it locked "
                                 f"by {holder}; wait for it to finish or stop it") from None
        details = {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.orig_argv),
                   "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(details) + "\n").encode("utf-8"), 0)
        with _held_guard:
            _held[key] = 1
        try:
            yield path
        finally:
            with _held_guard:
                del _held[key]
            # The file stays: deleting it would let a third process lock a new file while a second
            # one still waits on the old one.
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def watch_parent(parent_pid: int) -> None:
    """Pool initializer: end this worker when process ``parent_pid`` (its parent) ends."""
    if sys.platform.startswith("linux"):
        libc_name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(libc_name, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:
            log.debug("prctl unavailable (%s): polling the parent instead", exc)
    # The parent may have died before prctl took effect, and other platforms have no prctl.
    if os.getppid() != parent_pid:
        os._exit(1)

    def poll() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                # os._exit, not sys.exit: a worker blocked in torch must not wait for anything.
                os._exit(1)

    threading.Thread(target=poll, name="watch-parent", daemon=True).start()
