"""``python -m webapp bench``: simulated participants against the gunicorn-served app on loopback.

Each simulated participant opens the link, consents and then, page by page, fetches the page and
posts its answers exactly as the browser does (CSRF token, idempotency key, retry on network
errors). Prints page submissions per second, latency percentiles and errors, then checks in the
database that every acknowledged page is stored exactly once. With ``--crash`` the server is
killed with SIGKILL part-way through and restarted; clients keep retrying and resume.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from sqlalchemy import func, select

from common.stimulus_set import (
    REFERENCE_FILE,
    SCHEMA,
    STANDARD_CONDITIONS,
    SYSTEM,
    condition_file,
    trial_folder,
    write_manifest,
)

from .errors import ConfigError
from .manifest import load_stimulus_set
from .storage import Page, Participant, Rating, Storage, database_url_for

META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
DATA = re.compile(r'<script type="application/json" id="page-data">(.*?)</script>', re.S)
SET_NAME = "bench"


def _make_set(root: Path, n_trials: int) -> Path:
    """A stimulus set of ``n_trials`` rated trials (+1 training), 7 conditions of 0.5 s each."""
    rng = np.random.default_rng(0)
    folder = root / SET_NAME
    conditions = [*STANDARD_CONDITIONS.items(), *((f"sys{i}", SYSTEM) for i in range(4))]
    trials = []
    for k in range(n_trials + 1):
        tid = f"t{k:02d}"
        audio = trial_folder(folder, tid)
        audio.mkdir(parents=True)
        sf.write(audio / REFERENCE_FILE, 0.1 * rng.standard_normal(8000), 16000)
        for cid, _ in conditions:
            sf.write(audio / condition_file(cid), 0.1 * rng.standard_normal(8000), 16000)
        trials.append({
            "id": tid, "item": f"item{k}", "training": k == 0, "reference": REFERENCE_FILE,
            "conditions": [{"id": c, "role": r, "file": condition_file(c)} for c, r in conditions],
        })
    write_manifest(folder, {"schema": SCHEMA, "sample_rate": 16000, "trials": trials}, ConfigError)
    (folder / "test.yaml").write_text("title: bench\nheadphone_check: {trials: 2, pass_threshold: 1}\n")
    return folder


class Client:
    """One simulated participant with its own cookies and connection.

    ``connections="request"`` opens a new connection for every request, as gunicorn sees them
    behind nginx; ``"keep"`` keeps one open while the server allows. Speaks HTTP/1.1 on a plain
    socket, as a browser does: one write per request (headers and
    body together), responses framed by Content-Length (or chunked). http.client costs the bench
    about 0.5 ms of CPU per page in header parsing and split writes, taken from the 2 cores the
    server under test runs on.
    """

    def __init__(self, port: int, stats: Stats, connections: str = "request"):
        self.port = port
        self.connections = connections
        self.stats = stats
        self.sock: socket.socket | None = None
        self.buf = b""
        self.cookies: dict[str, str] = {}
        self.csrf = ""
        self.token = ""
        self.rng = random.Random()

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buf = b""

    def _read_until(self, mark: bytes) -> bytes:
        while (i := self.buf.find(mark)) < 0:
            self._fill()
        out, self.buf = self.buf[:i], self.buf[i + len(mark):]
        return out

    def _read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self.buf += chunk

    def _request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        if self.connections == "request":
            self._close()  # (a sync worker has closed it already)
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(request)
            status, headers_out, data = self._response(method)
        except (OSError, ValueError):
            self._close()
            raise
        for value in headers_out.get("set-cookie", ()):
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        self.token = self.cookies.get("earshot_participant", self.token)
        return status, headers_out, data

    def _response(self, method: str):
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers: dict[str, list[str]] = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        if method == "HEAD" or status in (204, 304):
            data = b""
        elif "content-length" in headers:
            data = self._read_exactly(int(headers["content-length"][0]))
        elif headers.get("transfer-encoding", [""])[0].lower() == "chunked":
            parts = []
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                parts.append(self._read_exactly(size))
                self._read_until(b"\r\n")
            self._read_until(b"\r\n")
            data = b"".join(parts)
        else:
            raise ValueError(f"{method}: a response with neither Content-Length nor chunked encoding")
        if "close" in headers.get("connection", [""])[0].lower():
            self._close()
        return status, headers, data

    def _retrying(self, method, path, body=b"", headers=None):
        delay = 0.05
        while True:
            try:
                return self._request(method, path, body, headers)
            except (OSError, ValueError):
                self.stats.network_errors += 1
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def run(self) -> None:
        status, _, html = self._retrying("GET", f"/t/{SET_NAME}/")
        self.csrf = META.search(html.decode()).group(1)
        body = f"consent=yes&csrf_token={self.csrf}".encode()
        self._retrying("POST", f"/t/{SET_NAME}/start", body, {"Content-Type": "application/x-www-form-urlencoded"})
        while True:
            status, _, html = self._retrying("GET", f"/t/{SET_NAME}/page")
            text = html.decode()
            m = DATA.search(text)
            if status != 200 or m is None:
                self.stats.finished += "Thank you" in text
                return
            self.csrf = META.search(text).group(1)
            data = json.loads(m.group(1))
            self._submit(data)

    def _answer(self, data: dict) -> dict:
        kind = data["kind"]
        if kind in ("training", "trial"):
            n = len(data["sounds"])
            scores = [100] + [self.rng.randrange(100) for _ in range(n - 1)]
            return {"ratings": [{"stimulus": s["stimulus"], "score": scores[i], "plays": 1, "listening_ms": 900} for i, s in enumerate(data["sounds"])], "duration_ms": 5000, "loop_used": False}
        if kind == "headphones":
            return {"answers": [0] * len(data["rounds"])}
        if kind == "volume":
            return {"gain_db": 0.0, "plays": 1}
        return {"answers": {"hearing_problems": "no", "experience": "some"}}

    def _submit(self, data: dict) -> None:
        payload = {"position": data["position"], "idempotency_key": secrets.token_hex(12), **self._answer(data)}
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "X-CSRFToken": self.csrf}
        while True:
            t0 = time.perf_counter()
            try:
                status, _, reply = self._request("POST", f"/t/{SET_NAME}/api/page", body, headers)
            except (OSError, ValueError):
                self.stats.network_errors += 1
                time.sleep(0.1)
                continue
            latency = time.perf_counter() - t0
            if status == 200:
                self.stats.record(latency, self.token, data["position"], payload["idempotency_key"], json.loads(reply)["replayed"])
                return
            if status >= 500 or status in (408, 429):
                self.stats.http_errors += 1
                time.sleep(0.1)
                continue
            self.stats.http_errors += 1
            self.stats.refused.append((status, reply[:200]))
            return


@dataclass
class Stats:
    latencies: list = field(default_factory=list)
    acknowledged: list = field(default_factory=list)
    network_errors: int = 0
    http_errors: int = 0
    replays: int = 0
    finished: int = 0
    refused: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, latency, token, position, key, replayed):
        with self.lock:
            self.latencies.append(latency)
            self.acknowledged.append((token, position, key))
            self.replays += bool(replayed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, workers: int, threads: int, env: dict) -> subprocess.Popen:
    # --threads 1 runs gunicorn's sync workers, more its gthread workers (gunicorn's own rule).
    cmd = [sys.executable, "-m", "gunicorn", "--no-control-socket", "-w", str(workers), "--threads", str(threads),
           "-b", f"127.0.0.1:{port}", "--log-level", "warning", "webapp.wsgi:app"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise ConfigError(f"gunicorn exited with status {proc.returncode} while starting")
        time.sleep(0.2)
    raise ConfigError("gunicorn did not answer /healthz within 60 s")


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    proc.wait(timeout=30)


def _server_cpu_s(proc: subprocess.Popen) -> float:
    """CPU seconds used so far by the gunicorn master and its live workers (Linux ``/proc``).

    Sampled rather than taken from ``RUSAGE_CHILDREN``, which would also count the workers'
    start-up (about a second each, importing the libraries) and not the requests alone.
    """
    tick = os.sysconf("SC_CLK_TCK")
    pids = [proc.pid]
    try:
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        return 0.0
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker that just exited
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def _verify(storage: Storage, stats: Stats) -> tuple[int, int]:
    """(lost, duplicated): acknowledged pages missing from the database, and extra rows."""
    lost = duplicated = 0
    with storage.reading() as s:
        rows = s.execute(
            select(Participant.token, Page.position, Page.idempotency_key, Page.id, Page.condition_order)
            .join(Page, Page.participant_id == Participant.id)
            .where(Page.submitted_at.is_not(None))
        ).all()
        stored = {(t, p): (k, pid, order) for t, p, k, pid, order in rows}
        counts = dict(s.execute(select(Rating.page_id, func.count()).group_by(Rating.page_id)).all())
    acked = {}
    for token, position, key in stats.acknowledged:
        acked.setdefault((token, position), set()).add(key)
    for (token, position), keys in acked.items():
        entry = stored.get((token, position))
        if entry is None or entry[0] not in keys:
            lost += 1
            continue
        if len(keys) > 1:
            duplicated += len(keys) - 1
        _, page_id, order = entry
        if order is not None and counts.get(page_id, 0) != len(order):
            duplicated += abs(counts.get(page_id, 0) - len(order))
    return lost, duplicated


def run_bench(args) -> int:
    root = Path(tempfile.mkdtemp(prefix="earshot-bench-"))
    try:
        return _run_bench(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_bench(args, root: Path) -> int:
    folder = _make_set(root / "stimuli", args.trials)
    results = root / "results"
    env = dict(os.environ)
    env.update(
        EARSHOT_STIMULUS_SETS=str(folder), EARSHOT_RESULTS_DIR=str(results),
        EARSHOT_SECRET_KEY=secrets.token_hex(32),
    )
    if args.database_url:
        env["EARSHOT_DATABASE_URL"] = args.database_url
    else:
        env.pop("EARSHOT_DATABASE_URL", None)
    port = args.port or _free_port()
    stim = load_stimulus_set(folder)
    storage = Storage(database_url_for(stim.name, results, args.database_url))
    storage.initialise()
    if args.database_url:
        with storage.reading() as s:
            if s.scalar(select(func.count()).select_from(Participant)):
                raise ConfigError(f"--database-url {args.database_url}: the database already holds participants; use an empty one")
    server_threads = args.threads
    server_kind = f"{args.workers} sync workers" if server_threads == 1 else f"{args.workers} gthread workers x {server_threads} threads"
    pages_each = 2 + 1 + args.trials + 1
    print(f"bench: {args.participants} participants x {pages_each} pages, gunicorn {server_kind}, connections: {args.connections}, "
          f"{'PostgreSQL' if args.database_url else 'SQLite (WAL)'}")
    server = _start_server(port, args.workers, server_threads, env)
    stats = Stats()
    clients = [Client(port, stats, args.connections) for _ in range(args.participants)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = -_server_cpu_s(server)
    try:
        for t in threads:
            t.start()
        if args.crash:
            target = args.participants * pages_each * 0.4
            while len(stats.acknowledged) < target:
                time.sleep(0.01)
            before = len(stats.acknowledged)
            server_cpu += _server_cpu_s(server)
            _stop(server, signal.SIGKILL)
            print(f"crash: killed the server (SIGKILL) after {before} acknowledged pages; restarting")
            server = _start_server(port, args.workers, server_threads, env)
            server_cpu -= _server_cpu_s(server)
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        server_cpu += _server_cpu_s(server)
    finally:
        _stop(server)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    lat = np.array(stats.latencies) * 1000
    n = len(stats.acknowledged)
    print(f"page submissions: {n} in {elapsed:.2f} s = {n / elapsed:.0f} submissions/s")
    if n:
        print(f"latency of a submission: p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, max {lat.max():.1f} ms")
    per_page_ms = 1000 * server_cpu / n if n else float("nan")
    print(f"CPU: server {server_cpu:.2f} s ({per_page_ms:.1f} ms per submission: page GET + POST; start-up excluded), "
          f"simulated clients {client_cpu:.1f} s, over {elapsed:.1f} s wall on "
          f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}: other processes share them)")
    print(f"errors: {stats.network_errors} network (retried), {stats.http_errors} HTTP; replays answered: {stats.replays}")
    lost, duplicated = _verify(storage, stats)
    storage.dispose()
    finished = stats.finished
    print(f"check: {lost} lost, {duplicated} duplicated; {finished} of {args.participants} participants finished")
    for status, body in stats.refused[:5]:
        print(f"  refused: {status} {body!r}")
    return 0 if lost == 0 and duplicated == 0 and finished == args.participants else 1
