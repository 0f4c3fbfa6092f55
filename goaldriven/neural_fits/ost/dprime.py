"""Per-image d' ("I1") of a linear decoder: the decoding half of object solution times.

Reference: A. Nayebi, PhD thesis (Stanford, 2022), Section 2.5.8 ("Obtaining model d' values"), following Kar et al.
2019 and Rajalingham et al. 2018 (I1); implementation spec ch2 Sections 9.4-9.5 and ambiguity A-14.

Image-level d' (binary match-to-sample form). For image i of true object o, with classifier probabilities P_i:

    FAR(i, d)      = P_i(d) / (P_i(d) + P_i(o))           for each distractor object d != o
    HR(i, d)       = 1 - FAR(i, d)
    FAR_obj(d, o)  = mean over images j of object d of FAR(j, o)      (false alarms for o when d is shown)
    d'(i, d)       = clip(Phi^-1(HR(i, d)) - Phi^-1(FAR_obj(d, o)), -5, 5)
    d'_i           = mean over distractors d of d'(i, d)

FAR_obj averages over the images of object d in the same probability matrix, i.e. over the images of the same test
set. Distractors with no image in the matrix are left out of the mean. Rates of exactly 0 or 1 (a probability of 0,
or both P_i(d) and P_i(o) underflowing) would give Phi^-1 = +-inf, so every rate is clipped to [RATE_EPS, 1 - RATE_EPS]
before Phi^-1 (RATE_EPS = 1e-12, Phi^-1 ~ +-7.03, beyond the +-5 bound on d'); a pair with P_i(d) = P_i(o) = 0
counts as FAR = 0.5 (no preference).

Decoder per split (spec 9.4): centre on the training images, PCA to min(pca_components, n_train, p) components fit on
the training images only (eigendecomposition of the smaller of the Gram / covariance matrices; components with
negligible variance are dropped, which changes nothing for a linear decoder; features constant over the training
images leave none, and every class then gets the same probability, d' = 0), then a linear SVM with C = 5e4.
A-14 decision: `LinearSVC(C)` (one-vs-rest, squared hinge, liblinear) with a softmax over its decision values whose
temperature is fit by 5-fold stratified cross-validation on the training images
(`CalibratedClassifierCV(method="temperature", ensemble=False)`). This is the "softmax over decision values" option
with its scale learnt rather than fixed at 1. `SVC(probability=True)` was not chosen because scikit-learn 1.9
deprecates it, and its replacement (sigmoid calibration of SVC's vote-based one-vs-rest scores) turns votes into
step-like probabilities. Everything is seeded, so the same seed gives the same d'.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.special
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

# n: images, k: objects (classes), p: features, c: PCA components, s: splits

DPRIME_CLIP = 5.0  # thesis: d' "bounded between -5 and 5"
RATE_EPS = 1e-12  # hit / false-alarm rates are clipped to [RATE_EPS, 1 - RATE_EPS] before Phi^-1
PCA_COMPONENTS = 1000  # thesis Section 2.5.8
SVM_C = 5e4  # thesis Section 2.5.8
CALIBRATION_FOLDS = 5
_PCA_RTOL = 1e-10  # components with variance below this fraction of the largest are dropped


def _check_labels(labels, n: int, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array with one entry per image ({n}). Received shape: {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"{name} must be integer class indices; map names with np.unique(..., return_inverse=True). "
            f"Received dtype: {labels.dtype}"
        )
    return labels


def image_dprime(probabilities, labels, clip: float = DPRIME_CLIP) -> np.ndarray:
    """Per-image I1 d' from classifier probabilities (see module docstring for the equations).

    Args:
        probabilities: (n, k) non-negative class probabilities (rows need not sum to 1; only ratios are used).
        labels: (n,) integer true class of each image, in [0, k).
        clip: d'(i, d) is clipped to [-clip, clip] before the mean over distractors.

    Returns:
        (n,) d' per image; NaN for an image none of whose distractor classes has an image in the matrix.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probabilities must be (n images, k >= 2 classes). Received shape: {probs.shape}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("probabilities must be finite and non-negative; check the classifier output.")
    if not clip > 0:
        raise ValueError(f"clip must be positive. Received: {clip}")
    n, k = probs.shape
    labels = _check_labels(labels, n)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= k:
        raise ValueError(
            f"labels must lie in [0, {k}) to index the {k} probability columns. "
            f"Received range: [{labels.min()}, {labels.max()}]"
        )

    p_true = probs[np.arange(n), labels][:, None]  # (n, 1)
    denom = probs + p_true  # (n, k)
    far = np.divide(probs, denom, out=np.full_like(probs, 0.5), where=denom > 0)  # FAR(i, d), (n, k)

    counts = np.bincount(labels, minlength=k)  # images per object
    sums = np.zeros((k, k))
    np.add.at(sums, labels, far)
    with np.errstate(invalid="ignore", divide="ignore"):
        far_obj = sums / counts[:, None]  # (k, k): row d, column o = FAR_obj(d -> o); NaN if object d is absent

    z = lambda rate: scipy.special.ndtri(np.clip(rate, RATE_EPS, 1.0 - RATE_EPS))
    dprime = z(1.0 - far) - z(far_obj[:, labels].T)  # (n, k): column d uses FAR_obj(d -> label_i)
    dprime = np.clip(dprime, -clip, clip)
    valid = (counts > 0)[None, :] & (np.arange(k)[None, :] != labels[:, None])  # (n, k) present distractors
    n_valid = valid.sum(axis=1)
    total = np.where(valid, dprime, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid > 0, total / n_valid, np.nan)


def pca_fit_transform(x_train: np.ndarray, x_test: np.ndarray, n_components: int):
    """Project train/test onto the top principal components of the (train-centred) training images."""
    x_train = x_train.astype(np.float64)  # float32 features are decoded in float64 one split at a time
    mean = x_train.mean(axis=0)
    xc = x_train - mean  # (n_train, p)
    n_train, p = xc.shape
    if p > n_train:  # Gram route: xc = U S V^T, xc xc^T = U S^2 U^T, scores = U S, V = xc^T U / S
        evals, evecs = np.linalg.eigh(xc @ xc.T)
    else:  # covariance route: xc^T xc = V S^2 V^T
        evals, evecs = np.linalg.eigh(xc.T @ xc)
    order = np.argsort(evals)[::-1][:n_components]
    evals, evecs = evals[order], evecs[:, order]
    keep = evals > _PCA_RTOL * max(evals[0], np.finfo(float).tiny)
    evals, evecs = evals[keep], evecs[:, keep]
    if p > n_train:
        components = xc.T @ (evecs / np.sqrt(evals))  # (p, c) orthonormal columns
    else:
        components = evecs  # (p, c)
    return xc @ components, (x_test - mean) @ components


def _fit_predict_proba(z_train, y_train, z_test, svm_c: float, seed: int, calibration_folds: int) -> np.ndarray:
    svm = LinearSVC(C=svm_c, random_state=seed, max_iter=10000)
    cv = StratifiedKFold(n_splits=calibration_folds, shuffle=True, random_state=seed)
    model = CalibratedClassifierCV(svm, method="temperature", ensemble=False, cv=cv)
    with warnings.catch_warnings():
        # With C = 5e4 the training images are (near) separable; liblinear's last few iterations do not move d'.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(z_train, y_train)
    return model.predict_proba(z_test)  # (n_test, k), columns in sorted class order


def decode_dprime(
    features,
    labels,
    splits,
    pca_components: int = PCA_COMPONENTS,
    svm_c: float = SVM_C,
    seed: int = 0,
    clip: float = DPRIME_CLIP,
    calibration_folds: int = CALIBRATION_FOLDS,
) -> np.ndarray:
    """Per-image d' of a PCA + linear-SVM decoder, for each train/test split (spec 9.4-9.5).

    Args:
        features: (n, p) features of one time bin.
        labels: (n,) integer class per image.
        splits: sequence of (train_indices, test_indices) pairs, e.g. from `ost_splits`.
        pca_components: PCA dimension, capped at min(n_train, p) (thesis: 1000).
        svm_c: SVM regularisation C (thesis: 5e4).
        seed: seeds the SVM and the calibration folds.
        clip: d' bound (thesis: 5).
        calibration_folds: folds of the temperature calibration (each class needs at least this many train images).

    Returns:
        (s, n) d'; entry [s, i] is NaN unless image i is a test image of split s. d' uses the split's test images
        only (FAR_obj averages over the test images of each distractor object).
    """
    x = np.asarray(features)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (n images, p features); flatten maps first. Received shape: {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf; clean them before decoding.")
    n = x.shape[0]
    labels = _check_labels(labels, n)
    classes, codes = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"Need at least 2 classes to decode. Received classes: {classes.tolist()}")
    if pca_components < 1:
        raise ValueError(f"pca_components must be >= 1. Received: {pca_components}")
    splits = list(splits)
    if not splits:
        raise ValueError("splits is empty; pass (train_indices, test_indices) pairs, e.g. from ost_splits().")
    out = np.full((len(splits), n), np.nan)
    for s, (train, test) in enumerate(splits):
        train, test = np.asarray(train, dtype=int), np.asarray(test, dtype=int)
        if train.ndim != 1 or test.ndim != 1 or train.size == 0 or test.size == 0:
            raise ValueError(
                f"Split {s}: train and test must be non-empty 1-D index arrays. "
                f"Received shapes: {train.shape}, {test.shape}"
            )
        if np.intersect1d(train, test).size:
            raise ValueError(f"Split {s}: train and test indices overlap; the test images must be held out.")
        if train.min() < 0 or test.min() < 0 or max(train.max(), test.max()) >= n:
            raise ValueError(f"Split {s}: indices must lie in [0, {n}).")
        train_counts = np.bincount(codes[train], minlength=classes.size)
        if train_counts.min() < calibration_folds:
            raise ValueError(
                f"Split {s}: every class needs >= {calibration_folds} training images (calibration "
                f"folds). Received per-class counts: {train_counts.tolist()}"
            )
        n_comp = min(pca_components, train.size, x.shape[1])
        z_train, z_test = pca_fit_transform(x[train], x[test], n_comp)
        if z_train.shape[1] == 0:  # features constant over the training images (e.g. a model after image off)
            probs = np.ones((test.size, classes.size))  # no information: equal probabilities, d' = 0
        else:
            probs = _fit_predict_proba(z_train, codes[train], z_test, svm_c, seed, calibration_folds)
        out[s, test] = image_dprime(probs, codes[test], clip=clip)
    return out
