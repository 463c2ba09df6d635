"""Earshot's MUSHRA web app: participants rate stimulus sets in the browser, researchers administer.

``create_app(settings)`` builds the Flask app; ``python -m webapp --help`` lists the commands.
The web app never imports torch; it reads stimulus sets through their manifest (from :mod:`models`
it takes only the torch-free anchor filter, to import webMUSHRA tests).
"""

from .app import create_app
from .errors import WebappError

__all__ = ["create_app", "WebappError"]
