"""The test suite, a package so that test modules import their helpers by package path
(``tests.support``, ``tests.webapp.stimulus_sets``) and may share basenames across folders."""
