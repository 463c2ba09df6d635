"""``python -m models``: the model zoo's command line."""

from .cli import main

raise SystemExit(main())
