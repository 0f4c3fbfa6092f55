"""Scores of neural fits: per-unit correlations and summaries (correlation.py), stimulus splits and trial halves
(splits.py), split-half reliability (reliability.py), noise-corrected model predictivity and inter-animal consistency
(consistency.py)."""
