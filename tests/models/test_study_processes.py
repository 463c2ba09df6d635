"""Study processes: one per study folder (a second fails at once naming the first), and no
worker outlives a killed parent. Real processes, since both are about processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from models.processes import LOCK_FILE, study_lock

pytestmark = pytest.mark.slow

# Two independent runs that would train for hours: the tests kill them.
ENDLESS = {
    "name": "endless",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": 8000, "duration_s": 1.0}],
    "students": [{"layers": [4, 4]}, {"layers": [8, 4]}],
    "training": {"window_samples": 128, "warmup_samples": 32, "max_epochs": 1_000_000, "max_batches_per_epoch": 1,
                 "batch_size": 4, "early_stop_patience_epochs": 1_000_000},
}
STARTUP_S = 180  # importing torch on a loaded 2-core machine


def study_command(tmp_path: Path, *extra: str) -> list[str]:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**ENDLESS, "output_dir": str(tmp_path / "out")}))
    return [sys.executable, "-m", "models", "-q", "study", str(path), *extra]


def wait_for(condition, what: str, timeout_s: float = STARTUP_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a reaper that may never come in a container."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def workers_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def processes():
    """Kill whatever a test started and left running (by pid), even when it fails."""
    started: list[int] = []
    yield started
    for pid in started:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def lock_holder(out: Path) -> dict | None:
    try:
        return json.loads((out / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_second_study_process_on_the_folder_fails_at_once_naming_the_first(tmp_path, processes):
    command = study_command(tmp_path)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(first.pid)
    out = tmp_path / "out"
    wait_for(lambda: (lock_holder(out) or {}).get("pid") == first.pid and list(out.glob("runs/*/log.jsonl")),
             "the first study to lock the folder and train")
    second = subprocess.run(command, capture_output=True, text=True, timeout=STARTUP_S)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"locked by process {first.pid} on {os.uname().nodename}" in lines[0]
    assert "study.yaml" in lines[0] and str(out) in lines[0]
    assert first.poll() is None  # the holder goes on undisturbed
    first.kill()
    first.wait()
    with study_lock(out):  # the kernel released the lock of the dead process: nothing to clean up
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_study_process_is_killed(tmp_path, processes):
    parent = subprocess.Popen(study_command(tmp_path, "--jobs", "2"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    processes.append(parent.pid)
    out = tmp_path / "out"
    wait_for(lambda: len(list(out.glob("runs/*/log.jsonl"))) == 2, "both workers to train")
    workers = workers_of(parent.pid)
    processes.extend(workers)
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), "the orphaned workers to exit", timeout_s=5)
