"""Evaluation: reports of prediction tables, per-run products for the pages, one galaxy's view,
exposure dropping (E20 Sec. 5.3) and baseline estimators."""
