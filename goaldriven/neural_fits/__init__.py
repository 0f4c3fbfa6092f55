"""Comparisons of models with neural recordings (thesis Chapters 2-4), one sub-package per seam:

    data/       the NeuralData format and its HDF5 file, checks, converters, synthetic recordings
    mappings/   features -> responses: one file per mapping, the MAPPINGS registry, the shared Gram, temporal wrappers
    metrics/    correlations, splits, split-half reliability, noise-corrected predictivity, inter-animal consistency
    ost/        object solution times (decoder d' and the OST per image)
    pipeline/   checkpoint -> features (FeatureStore and its views) -> fits -> report files; fit_checkpoint
    mec/        Chapter 4: recorded and model MEC rate maps, fits on spatial bins, eq. 4.1-4.4, KS, Fig. 4.1

Rate maps and grid / border scores of path integrators live in goaldriven.spatial.
"""
