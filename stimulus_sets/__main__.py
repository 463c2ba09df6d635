"""``python -m stimulus_sets``: the stimulus-set stage's command line."""

from stimulus_sets.cli import main

raise SystemExit(main())
