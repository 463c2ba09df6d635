"""Stage 2, MUSHRA stimulus sets: select trained runs from a study's runs.csv, render them with anchors and
reference, align loudness, write and check the set (manifest.json, WAVs, webMUSHRA yaml)."""
