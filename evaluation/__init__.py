"""Evaluation of MUSHRA listening tests and objective metrics for neural audio effects.

Modules, one concept each:

- ``config``: this package's configs, built by :mod:`common.typed_config` with its own
  ``ConfigError``;
- ``ratings`` (all rating sources → the tidy format), ``manifest`` (stimulus-set manifests),
  ``validation`` (the validation summary);
- ``screening`` (BS.1534-3 §4.1.2 post-screening, outlier flags), ``hinges`` (Tukey's hinges);
- ``descriptives``, ``comparisons`` (planned paired comparisons), ``omnibus`` (RM-ANOVA, mixed
  model, Friedman), ``objective`` and ``correlations`` (metrics per stimulus, their relation to the
  scores, the cost view), ``power``;
- ``analysis`` (the whole analysis of a panel, everything the report states), ``report`` (writes
  it as the report folder), ``report_html`` (``report.html`` from ``templates/report.html.j2``),
  ``numbers`` (``numbers.json``), ``latex`` (``tables.tex``), ``figures``;
- ``simulation`` (synthetic panels), ``bench``; ``python -m evaluation`` is the command line.

This package never imports torch or the web app: it reads manifests and ratings through their
documented formats.
"""
