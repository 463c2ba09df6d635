"""Server settings: a frozen dataclass read from an optional YAML file and ``EARSHOT_*`` variables.

Precedence, lowest first: defaults, the settings file (``--settings`` or ``EARSHOT_SETTINGS``),
environment variables. The secret key is never part of the repository: when none is given, one is
generated on first start and kept, readable by the owner only, in ``<results_dir>/webapp/``, so
every gunicorn worker and every restart signs cookies with the same key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from common.outputs import write_file_atomic

from .errors import ConfigError
from .typed_config import from_dict

log = logging.getLogger(__name__)

ENV_PREFIX = "EARSHOT_"


@dataclass(frozen=True)
class Settings:
    """Everything the server needs that does not belong to one test."""

    stimulus_sets: tuple[Path, ...] = ()
    """Stimulus set folders (each holds ``manifest.json``); the folder name is the test name."""
    results_dir: Path = Path("results")
    """Where SQLite databases (``<set>.db``) and the instance folder (``webapp/``) live."""
    database_url: str | None = None
    """SQLAlchemy URL shared by all tests, e.g. ``postgresql+psycopg://user@host/db``; None: SQLite."""
    secret_key: str | None = None
    admin_password_hash: str | None = None
    secure_cookies: bool = False
    """Send cookies only over HTTPS; turn on behind an HTTPS reverse proxy."""
    proxy_count: int = 0
    """Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted."""
    max_body_bytes: int = 65536
    login_attempts_per_window: int = 5
    login_window_s: int = 300
    audio_max_age_s: int = 3600
    development: bool = False
    sqlite_synchronous: Literal["normal", "full"] = "full"
    """SQLite durability. ``full``: an acknowledged page survives a power cut too, at one disk
    flush per submitted page. ``normal`` (with WAL): it survives the server being killed (kill -9,
    OOM, a crash) but a power cut or kernel panic may lose the last moments' pages; for a disk
    whose flushes are slow enough to limit the page rate."""
    integrity_check_interval_s: int = 60
    """``/healthz`` runs SQLite's ``PRAGMA quick_check`` (reads the whole file) at most this often
    per worker; the file's identity (deleted or replaced) is checked on every call and every write."""

    @property
    def instance_dir(self) -> Path:
        return self.results_dir / "webapp"


_ENV_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}


def _from_env(environ: Mapping[str, str]) -> dict:
    values: dict = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key in (
            f"{ENV_PREFIX}SETTINGS",
            f"{ENV_PREFIX}REQUIRE_BROWSER",
            f"{ENV_PREFIX}REQUIRE_POSTGRES",
        ):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in _ENV_TYPES:
            continue
        kind = str(_ENV_TYPES[name])
        if "tuple" in kind:
            values[name] = [p for p in raw.split(os.pathsep) if p]
        elif kind.startswith("bool") or kind == "bool":
            low = raw.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise ConfigError(f"environment variable {key}: expected 1/0/true/false, found {raw!r}")
            values[name] = low in ("1", "true", "yes")
        elif kind == "int":
            try:
                values[name] = int(raw)
            except ValueError:
                raise ConfigError(f"environment variable {key}: expected an integer, found {raw!r}") from None
        else:
            values[name] = raw
    return values


def load_settings(
    path: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides,
) -> Settings:
    """Read settings: defaults < YAML file < ``EARSHOT_*`` environment < keyword ``overrides``."""
    environ = os.environ if environ is None else environ
    data: dict = {}
    path = path or environ.get(f"{ENV_PREFIX}SETTINGS")
    if path:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"settings file {path}: cannot read it ({exc})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"settings file {path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"settings file {path}: expected a mapping at the top level")
        data.update(loaded or {})
    data.update(_from_env(environ))
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(Settings, data, where=str(path) if path else "settings")


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents readable by the owner only: the results folder
    holds the ratings (personal data) and the instance folder the secret key."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)


def _read_or_create(path: Path, make) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(make())
    # link() fails if a concurrent worker won the race, so everyone ends up with the same key.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_text(encoding="utf-8").strip()


def resolve_secret_key(settings: Settings) -> str:
    """The configured secret key, or the one kept in the instance folder (created on first use)."""
    if settings.secret_key:
        return settings.secret_key
    return _read_or_create(settings.instance_dir / "secret_key", lambda: secrets.token_hex(32))


def admin_password_file(settings: Settings) -> Path:
    return settings.instance_dir / "admin_password_hash"


def resolve_admin_password_hash(settings: Settings) -> str | None:
    """The admin password hash from settings/environment, else from the instance folder."""
    if settings.admin_password_hash:
        return settings.admin_password_hash
    try:
        return admin_password_file(settings).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def store_admin_password_hash(settings: Settings, password_hash: str) -> Path:
    path = admin_password_file(settings)
    make_private_dirs(path.parent)
    return write_file_atomic(path, password_hash + "\n", ConfigError, mode=0o600)
