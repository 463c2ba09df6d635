"""``python -m models``: the model zoo's command line."""

from models.cli import main

raise SystemExit(main())
