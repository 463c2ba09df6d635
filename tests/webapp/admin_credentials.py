"""The admin password the web app tests log in with, and its stored hash."""

from __future__ import annotations

from webapp.security import hash_password

ADMIN_PASSWORD = "correct horse battery"
ADMIN_HASH = hash_password(ADMIN_PASSWORD)
