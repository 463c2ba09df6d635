"""``python -m earshot``: the same as the ``earshot`` console script."""

from earshot.cli import main

raise SystemExit(main())
