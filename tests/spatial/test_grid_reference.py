"""The default grid score reproduces the reference GridScorer (Banino et al. 2018 code, as vendored by Sorscher et al.).

The expected values come from `loop_grid_scores` below: a straightforward, independent version of the reference
scorer's documented algorithm, lag by lag and ring by ring (plain NumPy, direct sums, scipy.ndimage.rotate called
per map exactly as the reference calls it). Nothing in it comes from goaldriven.
"""

import numpy as np
import pytest
import scipy.ndimage

from goaldriven.spatial.scores import grid_score, grid_scores, reference_autocorrelogram

# u: units, h/w: spatial bins

REF_ANGLES = (30, 45, 60, 90, 120, 135, 150)
REF_STARTS = [0.2] * 10  # the reference's mask parameters (DeepMind train.py, Sorscher's scores use)
REF_ENDS = np.linspace(0.4, 1.0, num=10).tolist()


def loop_sac(ratemap):
    """The reference SAC: NaN read as 0 (and counted), per-lag one-pass Pearson, 0/0 -> 0."""
    x = np.where(np.isnan(ratemap), 0.0, ratemap)
    h, w = x.shape
    sac = np.zeros((2 * h - 1, 2 * w - 1))
    for dy in range(1 - h, h):
        for dx in range(1 - w, w):
            a = x[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]  # bins p
            b = x[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]  # bins p + (dy, dx)
            n = a.size
            s1, s2, s11, s22, s12 = a.sum(), b.sum(), (a * a).sum(), (b * b).sum(), (a * b).sum()
            cov = s12 / n - s1 * s2 / n**2
            with np.errstate(invalid="ignore", divide="ignore"):
                coef = cov / (np.sqrt(s11 / n - s1**2 / n**2) * np.sqrt(s22 / n - s2**2 / n**2))
            sac[dy + h - 1, dx + w - 1] = coef if np.isfinite(coef) else 0.0
    return sac


def loop_rings(sac_shape, nbins):
    """Ring masks lag by lag: start * n < distance <= end * n."""
    H, W = sac_shape
    rings = np.zeros((len(REF_ENDS), H, W), bool)
    for i in range(H):
        for j in range(W):
            d = np.sqrt((i - (H - 1) // 2) ** 2 + (j - (W - 1) // 2) ** 2)
            for k, (start, end) in enumerate(zip(REF_STARTS, REF_ENDS)):
                rings[k, i, j] = start * nbins < d <= end * nbins
    return rings


def loop_grid_scores(ratemap, method="mean", nbins=None):
    """(score60, score90, ring60, ring90) of one map by the reference algorithm."""
    nbins = min(ratemap.shape) if nbins is None else nbins
    sac = loop_sac(ratemap)
    rotated = {a: scipy.ndimage.rotate(sac, a, reshape=False) for a in REF_ANGLES}  # order=3, constant, cval=0
    s60, s90 = [], []
    for ring in loop_rings(sac.shape, nbins):
        area = ring.sum()
        mean = (sac * ring).sum() / area
        centred = (sac - mean) * ring
        variance = (centred**2).sum() / area + 1e-5
        c = {a: (centred * (rotated[a] - mean) * ring).sum() / area / variance for a in REF_ANGLES}
        if method == "mean":
            s60.append((c[60] + c[120]) / 2 - (c[30] + c[90] + c[150]) / 3)
        else:
            s60.append(min(c[60], c[120]) - max(c[30], c[90], c[150]))
        s90.append(c[90] - (c[45] + c[135]) / 2)
    return max(s60), max(s90), int(np.argmax(s60)), int(np.argmax(s90)), np.array(s60), np.array(s90)


def hexagonal(rng, h, w, rectify=False):
    y, x = np.mgrid[0:h, 0:w] + 0.5
    k = 2 * np.pi / rng.uniform(4, 12)
    phase, angle = rng.uniform(0, max(h, w), 2), rng.uniform(0, 60)
    waves = sum(
        np.cos(k * ((x - phase[0]) * np.cos(t) + (y - phase[1]) * np.sin(t)))
        for t in np.deg2rad(angle + np.array([0, 60, 120]))
    )
    return np.maximum(waves, 0) if rectify else waves


def smooth(rng, h, w, sigma):
    return scipy.ndimage.gaussian_filter(rng.normal(size=(h, w)), sigma)


def sample_maps(h, w, seed):
    """Smooth random fields, rectified ones (zero regions), hexagons, noise, NaN maps, tiny values next to zeros."""
    rng = np.random.default_rng(seed)
    maps = [smooth(rng, h, w, s) for s in (1.0, 2.0, 3.0)]
    maps += [np.maximum(smooth(rng, h, w, 2.0) - 0.05, 0) for _ in range(2)]
    maps += [hexagonal(rng, h, w), hexagonal(rng, h, w, rectify=True), hexagonal(rng, h, w) + rng.normal(size=(h, w))]
    maps.append(np.maximum(rng.normal(size=(h, w)), 0))
    with_nan = hexagonal(rng, h, w)
    with_nan[rng.random((h, w)) < 0.2] = np.nan
    block = smooth(rng, h, w, 2.0) + 3.0
    block[: h // 2] = np.nan
    tiny = np.maximum(smooth(rng, h, w, 2.0), 0)  # trained ReLU units: exact zeros next to 1e-7 .. 1e-13 rates
    zeros = tiny == 0
    tiny[zeros] = 10.0 ** -rng.uniform(7, 13, zeros.sum()) * (rng.random(zeros.sum()) < 0.2)
    return np.stack(maps + [with_nan, block, tiny])


TOL = 1e-6  # the brief asks for 1e-3; the implementation agrees to ~1e-10


def assert_matches_loops(maps, method="mean", nbins=None):
    out = grid_scores(maps, method=method, nbins=nbins)
    worst = 0.0
    for i, m in enumerate(maps):
        s60, s90, ring60, ring90, all60, all90 = loop_grid_scores(m, method, nbins)
        np.testing.assert_allclose([out["score60"][i], out["score90"][i]], [s60, s90], atol=TOL, err_msg=f"map {i}")
        worst = max(worst, abs(out["score60"][i] - s60), abs(out["score90"][i] - s90))
        for ring, best, scores in ((out["mask60"][i], ring60, all60), (out["mask90"][i], ring90, all90)):
            if np.sort(scores)[-2] < scores.max() - TOL:  # a clear winner: the same ring
                assert ring == best, (i, ring, best)
    return worst


@pytest.mark.parametrize("method", ["mean", "minmax"])
def test_default_matches_reference_on_20x20_maps(method):
    maps = np.concatenate([sample_maps(20, 20, seed) for seed in range(3)])
    assert maps.shape == (36, 20, 20)
    assert assert_matches_loops(maps, method) < TOL


@pytest.mark.parametrize("shape", [(10, 10), (15, 15), (25, 25), (30, 30), (16, 24), (20, 13)])
def test_default_matches_reference_on_other_sizes(shape):
    assert_matches_loops(sample_maps(*shape, seed=sum(shape)))


def test_default_matches_reference_with_explicit_nbins():
    assert_matches_loops(sample_maps(20, 20, seed=7)[:6], nbins=16)


def test_reference_sac_matches_loops_at_every_lag():
    maps = sample_maps(20, 20, seed=11)
    sacs = reference_autocorrelogram(maps)
    assert sacs.shape == (len(maps), 39, 39) and np.isfinite(sacs).all()
    for i, m in enumerate(maps):
        np.testing.assert_allclose(sacs[i], loop_sac(m), atol=1e-9, err_msg=f"map {i}")
    np.testing.assert_allclose(reference_autocorrelogram(maps[0]), sacs[0], atol=1e-12)
    np.testing.assert_allclose(sacs[:, 19, 19], 1.0, atol=1e-12)  # zero lag of a non-constant map


def test_nan_bins_count_as_zero_rate_bins():
    """The reference zeroes NaN before building its validity mask: an unvisited bin is a visited bin of rate 0."""
    rng = np.random.default_rng(2)
    maps = np.stack([hexagonal(rng, 20, 20) + 2.0 for _ in range(4)])
    maps[rng.random(maps.shape) < 0.15] = np.nan
    with_nan, zeroed = grid_scores(maps), grid_scores(np.nan_to_num(maps, nan=0.0))
    for key in ("score60", "score90"):
        np.testing.assert_array_equal(with_nan[key], zeroed[key])
    assert np.isfinite(with_nan["score60"]).all()


def test_constant_empty_and_unvisited_maps_score_zero_like_the_reference():
    maps = np.stack([np.ones((20, 20)), np.zeros((20, 20)), np.full((20, 20), np.nan)])
    out = grid_scores(maps)
    np.testing.assert_array_equal(out["score60"], 0.0)
    np.testing.assert_array_equal(out["score90"], 0.0)
    np.testing.assert_array_equal(out["mask60"], 0)  # every ring ties at 0: the first, as np.argmax
    for m in maps:
        assert loop_grid_scores(m)[:2] == (0.0, 0.0)


def test_float32_maps_are_scored_in_float64():
    maps = sample_maps(20, 20, seed=5)[:4].astype(np.float32)
    out = grid_scores(maps)
    for i, m in enumerate(maps):
        np.testing.assert_allclose(out["score60"][i], loop_grid_scores(m.astype(np.float64))[0], atol=TOL)


def test_hexagons_pass_and_squares_fail_the_threshold():
    rng = np.random.default_rng(9)
    hexagons = np.stack([hexagonal(rng, 20, 20, rectify=True) for _ in range(20)])
    assert np.all(grid_scores(hexagons)["score60"] > 0.3)
    y, x = np.mgrid[0:20, 0:20]
    squares = np.cos(2 * np.pi * x / 7) + np.cos(2 * np.pi * y / 7)
    s60, s90 = grid_score(squares)
    assert s60 < 0.0 < 0.3 < s90, (s60, s90)


def test_sac_options_select_the_scorers():
    maps = sample_maps(20, 20, seed=3)
    default, reference = grid_scores(maps), grid_scores(maps, sac="reference")
    pearson = grid_scores(maps, sac="pearson")
    np.testing.assert_array_equal(default["score60"], reference["score60"])
    np.testing.assert_array_equal(grid_scores(maps, min_overlap=20)["score60"], pearson["score60"])
    np.testing.assert_array_equal(
        grid_scores(maps, sac="strict")["score60"], grid_scores(maps, sac="pearson", min_overlap=150)["score60"]
    )
    # The issue: the Pearson SAC scorer differs from the reference by up to ~0.06 on plain 20x20 maps (and more
    # with NaN bins, which the two read differently).
    assert np.nanmax(np.abs(default["score60"] - pearson["score60"])) > 0.02


def test_sac_option_validation_messages():
    m = np.zeros((1, 20, 20))
    with pytest.raises(ValueError, match="sac must be one of"):
        grid_scores(m, sac="banino")
    with pytest.raises(ValueError, match="min_overlap applies to the Pearson SAC only"):
        grid_scores(m, sac="reference", min_overlap=20)
    with pytest.raises(ValueError, match="sac='strict' sets min_overlap itself"):
        grid_scores(m, sac="strict", min_overlap=20)
    with pytest.raises(ValueError, match=r"ratemap must be 2-D \(h, w\) or 3-D"):
        reference_autocorrelogram(np.zeros((2, 2, 2, 2)))
