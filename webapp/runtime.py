"""What one app holds while it runs: its tests, their databases and what it keeps between requests.

Kept in ``app.extensions["earshot"]`` and nowhere else: two apps in one process (tests, a WSGI
server mounting two) share nothing, and the blueprints reach it through ``current_app``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .manifest import StimulusSet, load_stimulus_set
from .settings import Settings, resolve_admin_password_hash
from .storage import Storage, database_url_for


@dataclass
class TestRuntime:
    """A served test: its stimulus set and its database."""

    stim: StimulusSet
    storage: Storage

    __test__ = False  # not a pytest test class


class Earshot:
    """The app's state: its settings, its tests and their databases, and the caches of the
    participant pages (filled by ``participant_views``)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.tests: dict[str, TestRuntime] = {}
        self._storages: dict[str, Storage] = {}
        self.rendered_pages: dict[tuple, str] = {}
        """Test pages rendered around markers, by template and page shape (``_render_page``)."""
        self.test_urls: dict[tuple[str, str], tuple[str, str, str]] = {}
        """(page, submit, audio prefix) URLs by (mount point, test)."""
        for folder in settings.stimulus_sets:
            stim = load_stimulus_set(folder)
            if stim.name in self.tests:
                raise ConfigError(f"two stimulus sets are named {stim.name!r} ({folder} and {self.tests[stim.name].stim.folder})")
            url = database_url_for(stim.name, settings.results_dir, settings.database_url)
            if url not in self._storages:
                storage = Storage(url, settings.sqlite_synchronous)
                storage.initialise()
                self._storages[url] = storage
            self.tests[stim.name] = TestRuntime(stim, self._storages[url])

    @property
    def admin_password_hash(self) -> str | None:
        # Read on every login so `python -m webapp set-password` works without a restart.
        return resolve_admin_password_hash(self.settings)

    def dispose(self) -> None:
        for storage in self._storages.values():
            storage.dispose()


__all__ = ["Earshot", "TestRuntime"]
