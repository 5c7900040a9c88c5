"""Baselines with the same Optimizer interface as SePO, registered by name in harness.methods:
manual-cot (manual_cot.py), textgrad (textgrad.py, the `textgrad` package), metaspo (metaspo.py),
espl (espl.py, E-SPL's prompt evolution with `trueskill`), gepa (gepa.py, the `gepa` package).
Shared machinery (resume journal, spend accounting, settings) is in common.py."""
