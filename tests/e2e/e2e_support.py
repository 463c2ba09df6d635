"""What the end-to-end test and its fixtures share (a module name no other test folder uses):
the tiny study, the stimulus config, the admin password and the served test process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.servers import free_port

ADMIN_PASSWORD = "end to end secret"
# 22050 Hz: the lowest common rate at which the 7 kHz anchor's stop band (from 8 kHz) fits.
SAMPLE_RATE = 22050
STUDY = {
    "name": "tiny-e2e",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": SAMPLE_RATE, "duration_s": 3.0}],
    "teachers": [{"name": "small", "layers": [16, 8]}],
    "students": [{"layers": [8, 8]}],
    "recipes": [{"recipe": "baseline"}, {"recipe": "kd", "distill": {"feature_loss": "kl"}}],
    "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 1, "max_batches_per_epoch": 2,
                 "learning_rate": 0.003},
}
ITEMS = [{"name": "guitar", "kind": "guitar"}, {"name": "bass", "kind": "bass"}]
GROUPS = [{"name": "S-8-8", "layers": [8, 8],
           "systems": [{"id": "distilled", "recipe": "kd", "teacher": "small"},
                       {"id": "non_distilled", "recipe": "baseline"}]}]
# Two headphone rounds keep the check short; everything else is the web app's default test.
TEST_YAML = {"headphone_check": {"trials": 2, "pass_threshold": 2}}


def clean_env() -> dict[str, str]:
    """The environment without the developer's own web app settings, so the server sees only ours."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EARSHOT_")}


class ServedTest:
    """``python -m webapp serve`` (gunicorn) as a child process on 127.0.0.1."""

    def __init__(self, folder: Path, results_dir: Path):
        self.folder = folder
        self.results_dir = results_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = results_dir.parent / "server.log"
        env = clean_env()
        setpw = subprocess.run(
            [sys.executable, "-m", "webapp", "set-password", "--password-stdin", "--results-dir", str(results_dir)],
            input=ADMIN_PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=60,
        )
        assert setpw.returncode == 0, setpw.stderr
        self._log_fh = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webapp", "serve", str(folder), "--host", "127.0.0.1", "--port", str(self.port),
             "--results-dir", str(results_dir), "--workers", "2"],  # sync workers, as in production
            stdout=self._log_fh, stderr=subprocess.STDOUT, env=env,
        )
        self._wait_ready(timeout_s=60)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/t/{self.folder.name}/", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the server did not answer within {timeout_s} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful shutdown on SIGTERM
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log_fh.close()
