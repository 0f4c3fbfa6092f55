"""MEC neural fits (thesis Chapter 4): recorded rate maps, model rate maps, mappings on spatial bins, 1-D and 2-D
inter-animal consistency, model predictivity, grid / border score distributions (KS), Fig. 4.1-style plots.

    ratemap_file.py     the HDF5 layout of binned responses per environment and recording (reader / writer / checks)
    converters.py       per-cell spike-count and occupancy arrays -> the layout (rates, sigma = 1 bin smoothing)
    transforms.py       the mapping transforms of Fig. 4.1 (MAPPINGS + fixed ElasticNet / Lasso, map-averaged CV)
    consistency.py      eq. 4.1-4.4: 1-D (repeated trials, maps) and 2-D (pooled source) estimators
    score_distributions.py  grid / border scores of rate maps and the two-sample KS distance
    model_ratemaps.py   rate maps of a path integrator on seeded trajectories in the recorded box
    fit.py              the Chapter 4 fit of one environment and its report files
    fit_checkpoint.py   a path-integrator checkpoint against one environment (goaldriven-fit --mec_data)
    plots.py            Fig. 4.1-style figures
    walkthrough.py      simulated grid, border and place-like cells with known tuning

Layout and decisions: docs/mec_fits.md.
"""
