"""Learning-rule identification from observables recorded along training (thesis Section 6.3; spec ch5_ch6 11):

grid.py         the grid of training runs (task x architecture x rule x batch size x seeds) and lock-claimed workers
dataset.py      RunObservables (one run's (T, L, S) statistics) -> Examples (one per layer), the count formula
classifiers.py  linear SVM (+ optional PCA), random forest, Conv1D network; grids and the CV grid search
protocols.py    10 balanced 75/25 splits, measures, rule pairs, holdouts, controls, subsampling, importances
figures.py      the Chapter 6 figures (6.4-6.7 styles) from the protocols' result dicts
report.py       from a grid's finished runs to results.json, tables and figures (goaldriven-identify analyze)
"""
