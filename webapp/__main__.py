"""Command line of the web app: ``python -m webapp {serve,set-password,export,import-webmushra,bench}``."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import os
import sys
from pathlib import Path

from common.errors import EarshotError

from .errors import ConfigError, StorageError

log = logging.getLogger("webapp")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, found {text!r}")
    return value


def _set_folder(value: str) -> Path:
    """A stimulus set given as a folder, or as a name under ./stimuli/."""
    path = Path(value)
    if path.is_dir() or os.sep in value or "/" in value:
        return path
    return Path("stimuli") / value


def _settings(args, stimulus_sets=()):
    from .settings import load_settings

    return load_settings(
        getattr(args, "settings", None),
        stimulus_sets=[str(p) for p in stimulus_sets] or None,
        results_dir=getattr(args, "results_dir", None),
        database_url=getattr(args, "database_url", None),
    )


def cmd_serve(args) -> int:
    from .app import create_app
    from .manifest import load_stimulus_set
    from .settings import resolve_secret_key
    from .storage import Storage, database_url_for

    folders = [_set_folder(s) for s in args.stimulus_sets]
    settings = _settings(args, folders)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.allow_external:
        raise ConfigError(
            f"--host {args.host}: the app listens on loopback only; put an HTTPS reverse proxy in front, "
            "or pass --allow-external if you really mean it"
        )
    # Check everything once, before any worker starts, so mistakes show as one clear error.
    for folder in folders:
        stim = load_stimulus_set(folder)
        storage = Storage(database_url_for(stim.name, settings.results_dir, settings.database_url))
        storage.initialise()
        storage.dispose()
    resolve_secret_key(settings)
    for folder in folders:
        print(f"participant link: http://{args.host}:{args.port}/t/{folder.name}/")
    print(f"admin: http://{args.host}:{args.port}/admin/")
    if args.development or args.reload:
        if args.development:
            os.environ.setdefault("FLASK_DEBUG", "1")
        # Templates re-read when edited (settings.development), also with the page cache.
        app = create_app(dataclasses.replace(settings, development=True))
        # --reload: werkzeug's reloader also restarts the server when a Python file changes.
        app.run(host=args.host, port=args.port, debug=args.development, use_reloader=args.reload)
        return 0

    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)
            # threads 1: gunicorn's sync workers; more: gthread workers (gunicorn switches itself).
            self.cfg.set("threads", args.threads)
            self.cfg.set("accesslog", "-" if args.access_log else None)
            self.cfg.set("graceful_timeout", 10)
            # gunicorn 27 opens a control socket at ~/.gunicorn/gunicorn.ctl shared by every server
            # of the user: a second server takes it over and the first one's shutdown deletes it.
            self.cfg.set("control_socket_disable", True)

        def load(self):
            return create_app(settings)

    _Server().run()
    return 0


def cmd_set_password(args) -> int:
    from .security import hash_password
    from .settings import store_admin_password_hash

    settings = _settings(args)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("new admin password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; nothing was changed")
    if len(password) < 10:
        raise ConfigError(f"password: expected at least 10 characters, found {len(password)}")
    digest = hash_password(password)
    path = store_admin_password_hash(settings, digest)
    print(f"stored the password hash in {path}")
    print(f"or set it in the environment: EARSHOT_ADMIN_PASSWORD_HASH='{digest}'")
    return 0


def cmd_export(args) -> int:
    from sqlalchemy.exc import DBAPIError

    from common.outputs import write_file_atomic

    from .exports import export
    from .manifest import load_stimulus_set
    from .storage import Storage, database_url_for

    folder = _set_folder(args.stimulus_set)
    settings = _settings(args)
    stim = load_stimulus_set(folder)
    url = database_url_for(stim.name, settings.results_dir, settings.database_url)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        raise ConfigError(f"no results database {url[len('sqlite:///'):]} for test {stim.name!r} (check --results-dir)")
    storage = Storage(url)
    try:
        storage.initialise()
        text = export(storage, stim, args.format, include_excluded=args.include_excluded)
    except DBAPIError as exc:
        # initialise() checked the file; this is damage quick_check does not see, or a server gone.
        # The engine's URL, not ``url``: its repr hides a PostgreSQL password.
        raise StorageError(f"{storage.engine.url!r}: cannot read the results ({exc.orig})") from exc
    finally:
        storage.dispose()
    if args.out in (None, "-"):
        sys.stdout.write(text)
    else:
        # Owner-only: the export holds the study's personal data, as the database does.
        out = write_file_atomic(Path(args.out), text, ConfigError, mode=0o600)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_import_webmushra(args) -> int:
    from .webmushra import import_webmushra

    out = import_webmushra(Path(args.config), Path(args.out), base_dir=Path(args.base_dir) if args.base_dir else None)
    print(f"wrote stimulus set {out}; serve it with: python -m webapp serve {out}")
    return 0


THREADS_HELP = (
    "threads per worker (default 1: gunicorn's sync workers, one request at a time per process, "
    "which measured fastest behind a buffering reverse proxy; more than 1: gthread workers, which "
    "also serve slow clients without a proxy but cost more CPU per request)"
)


def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m webapp", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--settings", help="YAML settings file (keys of webapp.settings.Settings); env EARSHOT_SETTINGS")
        p.add_argument("--results-dir", help="folder of the SQLite databases and the instance folder (default: results)")
        p.add_argument("--database-url", help="SQLAlchemy/PostgreSQL URL shared by all tests, e.g. postgresql://user@host/earshot (default: SQLite results/<set>.db)")

    p = sub.add_parser("serve", help="serve stimulus sets to participants (gunicorn, loopback)")
    p.add_argument("stimulus_sets", nargs="+", help="stimulus set folders (stimuli/<set>) or names under stimuli/")
    common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; a reverse proxy serves the public side)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=_positive_int, default=3, help="gunicorn worker processes (default 3: tuned on 2 cores, see webapp/docs/running-a-study.md)")
    p.add_argument("--threads", type=_positive_int, default=1, help=THREADS_HELP)
    p.add_argument("--access-log", action="store_true", help="print one line per request")
    p.add_argument("--allow-external", action="store_true", help="allow a non-loopback --host")
    p.add_argument("--development", action="store_true", help="Flask's debug server with tracebacks in the browser; never for real participants")
    p.add_argument("--reload", action="store_true", help="Flask's development server serving edited templates at once and restarting on edited Python files; never for real participants")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("set-password", help="set the /admin password (stores a scrypt hash)")
    common(p)
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin instead of prompting")
    p.set_defaults(func=cmd_set_password)

    p = sub.add_parser("export", help="export a test's results")
    p.add_argument("stimulus_set", help="stimulus set folder or name under stimuli/")
    common(p)
    p.add_argument("--format", choices=("ratings", "participants", "mushra", "json"), default="ratings",
                   help="ratings: tidy CSV (columns: docs/formats.md); participants: one row per participant; mushra: webMUSHRA mushra.csv; json: everything")
    p.add_argument("--out", help="output file (default: stdout)")
    p.add_argument("--include-excluded", action="store_true", help="keep participants the experimenter excluded")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import-webmushra", help="turn a webMUSHRA YAML config's mushra pages into a stimulus set")
    p.add_argument("config", help="webMUSHRA YAML config file")
    p.add_argument("--out", required=True, help="new stimulus set folder, e.g. stimuli/<set>")
    p.add_argument("--base-dir", help="folder the config's audio paths are relative to (default: the config's folder)")
    p.set_defaults(func=cmd_import_webmushra)

    p = sub.add_parser("bench", help="load test: simulated participants against gunicorn on loopback")
    p.add_argument("--participants", type=_positive_int, default=50, help="concurrent simulated participants (default 50)")
    p.add_argument("--trials", type=_positive_int, default=8, help="rated trials in the generated test (default 8)")
    p.add_argument("--workers", type=_positive_int, default=3, help="gunicorn workers (default 3)")
    p.add_argument("--threads", type=_positive_int, default=1, help=THREADS_HELP)
    p.add_argument("--database-url", help="PostgreSQL URL to bench instead of SQLite")
    p.add_argument("--crash", action="store_true", help="kill -9 the server mid-run, restart it, and check that no acknowledged page was lost")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument(
        "--connections", choices=("request", "keep"), default="request",
        help="'request' (default): a new connection for every request, as gunicorn sees them behind the "
        "documented nginx (HTTP/1.0 to its upstream); 'keep': one keep-alive connection per participant "
        "for the whole test (gthread workers only; sync workers close every connection), which pins "
        "each participant to the worker that accepted it first",
    )
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except EarshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
