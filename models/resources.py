"""What this machine allows: memory for a dataset or a network, and places to write outputs.

Both are checked before any work starts, so that an absurd setting is one line naming the key
and the limit rather than minutes of work ending in a MemoryError, the kernel's OOM killer or a
traceback when the output is finally written.
"""

from __future__ import annotations

import os
from pathlib import Path

GB = 1024**3


def memory_bytes() -> int | None:
    """Memory this process may use: the physical memory, or a lower cgroup (container) limit;
    None when the platform does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = int(text) if total is None else min(total, int(text))
        break
    return total


def memory_shortfall(needed_bytes: float) -> str | None:
    """None when ``needed_bytes`` fit in this machine's memory, else ``"about X GB, more than this
    machine's Y GB"`` for an error message."""
    available = memory_bytes()
    if available is None or needed_bytes <= available:
        return None
    return f"about {needed_bytes / GB:.3g} GB of memory, more than this machine's {available / GB:.3g} GB"


def unwritable_reason(path: Path) -> str | None:
    """Why ``path`` (a file or folder to create, or to replace) cannot be written, or None.

    Looks at the nearest existing ancestor: a regular file there means no folder can ever be
    created below it (not even by root); a folder without write permission is refused too."""
    path = Path(path).absolute()
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link
            return f"{ancestor} is a broken symbolic link"
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"the folder {ancestor} is not writable"
    return None
