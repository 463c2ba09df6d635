"""WSGI entry point for gunicorn: the app configured from ``EARSHOT_*`` environment variables.

    EARSHOT_STIMULUS_SETS=stimuli/demo gunicorn -w 4 -b 127.0.0.1:8000 webapp.wsgi:app
"""

from .app import create_app

app = create_app()
