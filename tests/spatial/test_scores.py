"""Tests for goaldriven.spatial.scores."""

import numpy as np
import pytest
import scipy.ndimage

from goaldriven.spatial import scores as spatial_scores
from goaldriven.spatial.scores import (
    BORDER_THRESHOLD,
    GRID_THRESHOLD,
    border_score,
    border_scores,
    fraction_above,
    grid_score,
    grid_scores,
    spatial_autocorrelogram,
)

# u: units, h/w: spatial bins

N = 20  # bins per side, as in the thesis


def plane_waves(angles_deg, wavelength, phases=(0.3, 1.1, 2.0), n=N):
    """Sum of cosine plane waves on an n x n map of a unit box (wavelength in box units)."""
    c = (np.arange(n) + 0.5) / n - 0.5
    x, y = np.meshgrid(c, c)
    k = 2 * np.pi / wavelength
    return sum(
        np.cos(k * (np.cos(np.deg2rad(a)) * x + np.sin(np.deg2rad(a)) * y) + p) for a, p in zip(angles_deg, phases)
    )


def hexagon(rotation=0.0, wavelength=1 / 3):
    return plane_waves([rotation, rotation + 60, rotation + 120], wavelength)


def square(rotation=0.0, wavelength=1 / 3):
    return plane_waves([rotation, rotation + 90], wavelength)


def brute_force_sac(m, dy, dx):
    """Pearson correlation of m(p) and m(p + (dy, dx)) over bins valid in both."""
    h, w = m.shape
    a, b = [], []
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                if np.isfinite(m[i, j]) and np.isfinite(m[i + dy, j + dx]):
                    a.append(m[i, j])
                    b.append(m[i + dy, j + dx])
    return np.corrcoef(a, b)[0, 1]


# ------------------------------------------------------------------ autocorrelogram


def test_sac_centre_symmetry_and_brute_force():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((N, N)) + hexagon()
    m[rng.random((N, N)) < 0.15] = np.nan
    sac = spatial_autocorrelogram(m)
    assert sac.shape == (2 * N - 1, 2 * N - 1)
    np.testing.assert_allclose(sac[N - 1, N - 1], 1.0, atol=1e-12)
    np.testing.assert_allclose(sac, sac[::-1, ::-1], atol=1e-10, equal_nan=True)
    for dy, dx in [(0, 1), (1, 0), (3, -2), (-5, 7), (10, 10), (-12, 4)]:
        np.testing.assert_allclose(
            sac[N - 1 + dy, N - 1 + dx], brute_force_sac(m, dy, dx), atol=1e-10, err_msg=f"lag {(dy, dx)}"
        )


def test_sac_min_overlap_masks_far_lags():
    m = np.random.default_rng(1).standard_normal((N, N))
    sac = spatial_autocorrelogram(m, min_overlap=20)
    assert np.isnan(sac[0, 0]) and np.isnan(sac[-1, -1])  # 1 overlapping bin
    assert np.isfinite(sac[N - 1, 0])  # lag (0, -19): 20 bins overlap
    assert np.isnan(spatial_autocorrelogram(m, min_overlap=21)[N - 1, 0])


def test_sac_stack_matches_single_maps():
    maps = np.random.default_rng(2).standard_normal((3, 8, 11))
    stacked = spatial_autocorrelogram(maps, min_overlap=5)
    for m, s in zip(maps, stacked):
        np.testing.assert_allclose(s, spatial_autocorrelogram(m, min_overlap=5), atol=1e-12, equal_nan=True)


# ------------------------------------------------------------------ grid scores


def pearson_grid_score(ratemap, method):
    """The documented sac="pearson" definition, ring by ring, with ndimage.rotate and np.corrcoef."""
    sac = spatial_autocorrelogram(ratemap)
    n = ratemap.shape[0]
    c = np.arange(2 * n - 1) - (n - 1)
    dist = np.hypot(c[:, None], c[None, :])
    valid = np.isfinite(sac)
    filled = np.nan_to_num(sac)
    best60 = best90 = -np.inf
    for outer in np.linspace(0.4, 1.0, 10):
        ring = (dist > 0.2 * n) & (dist <= outer * n)
        r = {}
        for angle in (30, 45, 60, 90, 120, 135, 150):
            rot = scipy.ndimage.rotate(filled, angle, reshape=False, order=1)
            rot_ok = scipy.ndimage.rotate(valid.astype(float), angle, reshape=False, order=1) > 0.99
            sel = ring & valid & rot_ok
            r[angle] = np.corrcoef(sac[sel], rot[sel])[0, 1]
        if method == "mean":
            s60 = (r[60] + r[120]) / 2 - (r[30] + r[90] + r[150]) / 3
        else:
            s60 = min(r[60], r[120]) - max(r[30], r[90], r[150])
        best60 = max(best60, s60)
        best90 = max(best90, r[90] - (r[45] + r[135]) / 2)
    return best60, best90


@pytest.mark.parametrize("method", ["mean", "minmax"])
def test_pearson_grid_score_matches_its_definition(method):
    rng = np.random.default_rng(5)
    unvisited_block = hexagon(rotation=25.0)
    unvisited_block[:8] = np.nan  # SAC is NaN for |dy| >= 11: NaN edges inside the rings
    for m in (
        hexagon(rotation=10.0) + 0.5 * rng.standard_normal((N, N)),
        square(),
        rng.standard_normal((N, N)),
        unvisited_block,
    ):
        m[rng.random((N, N)) < 0.2] = np.nan
        np.testing.assert_allclose(
            grid_score(m, method=method, sac="pearson"), pearson_grid_score(m, method), atol=1e-9
        )


def test_hexagonal_grid_scores_high_60_and_low_90():
    for pattern in (hexagon(), np.maximum(hexagon(), 0.0), hexagon(wavelength=0.45)):
        s60, s90 = grid_score(pattern)
        assert isinstance(s60, float) and isinstance(s90, float)
        assert s60 > 1.0, s60  # measured ~1.4-1.5
        assert s60 > s90 + 0.5, (s60, s90)


def test_square_grid_scores_high_90_and_negative_60():
    s60, s90 = grid_score(square())
    assert s90 > 1.0, s90  # measured ~1.37
    assert s60 < 0.0, s60  # measured ~-0.31


def test_rotated_hexagon_still_scores_high():
    s60, s90 = grid_score(hexagon(rotation=17.0))
    assert s60 > 1.0 and s60 > s90 + 0.5, (s60, s90)


def test_white_noise_scores_near_zero():
    rng = np.random.default_rng(3)
    s60 = grid_scores(rng.standard_normal((20, N, N)))["score60"]
    # The max over 10 rings biases noise upwards (mean ~0.1; ~5% of 20x20 noise maps
    # exceed 0.3), far below the ~1.4 of a grid.
    assert abs(s60.mean()) < 0.2, s60
    assert np.all(np.abs(s60) < 0.5), s60


def test_nan_bins_give_finite_scores_close_to_full_map():
    full = np.array(grid_score(hexagon()))
    for seed in range(3):
        m = hexagon()
        m[np.random.default_rng(seed).random((N, N)) < 0.1] = np.nan
        part = np.array(grid_score(m))
        assert np.all(np.isfinite(part))
        np.testing.assert_allclose(part, full, atol=0.1)


def test_minmax_not_above_mean():
    mean60, mean90 = grid_score(hexagon(rotation=5.0))
    mm60, mm90 = grid_score(hexagon(rotation=5.0), method="minmax")
    assert mm60 <= mean60 + 1e-12
    assert mm60 > 1.0
    assert mm90 == pytest.approx(mean90)  # both methods use mean(r45, r135)


def test_grid_scores_stack_matches_single_and_reports_masks():
    maps = np.stack([hexagon(), square(), hexagon(rotation=40.0)])
    out = grid_scores(maps, return_sacs=True)
    assert set(out) == {"score60", "score90", "mask60", "mask90", "sacs"}
    assert out["sacs"].shape == (3, 2 * N - 1, 2 * N - 1)
    for i, m in enumerate(maps):
        np.testing.assert_allclose((out["score60"][i], out["score90"][i]), grid_score(m))
    assert np.all((out["mask60"] >= 0) & (out["mask60"] < 10))


def test_constant_map_scores_nan_with_the_pearson_sac():
    out = grid_scores(np.ones((1, N, N)), sac="pearson")  # the default (reference) scores 0: test_grid_reference.py
    assert np.isnan(out["score60"][0]) and out["mask60"][0] == -1


def test_grid_validation_messages():
    with pytest.raises(ValueError, match=r"ratemap must be 2-D \(h, w\).*grid_scores\(\)"):
        grid_score(np.zeros((2, N, N)))
    with pytest.raises(ValueError, match=r"ratemaps must be 3-D \(u, h, w\)"):
        grid_scores(np.zeros((N, N)))
    with pytest.raises(ValueError, match="method must be one of"):
        grid_score(hexagon(), method="median")
    with pytest.raises(ValueError, match="min_overlap"):
        spatial_autocorrelogram(hexagon(), min_overlap=0)


# ------------------------------------------------------------------ border scores


def expected_border(cm, field):
    """(CM - DM) / (CM + DM), DM by an explicit loop over the field's bins."""
    h, w = field.shape
    num = den = 0.0
    for i in range(h):
        for j in range(w):
            if field[i, j] > 0:
                d = min(i + 0.5, h - i - 0.5, j + 0.5, w - j - 0.5) / (min(h, w) / 2)
                num += field[i, j] * d
                den += field[i, j]
    dm = num / den
    return (cm - dm) / (cm + dm)


def test_band_along_one_wall_is_border():
    m = np.zeros((N, N))
    m[:, :2] = 1.0  # left wall, 2 bins thick
    b = border_score(m)
    assert b > BORDER_THRESHOLD
    np.testing.assert_allclose(b, expected_border(1.0, m), atol=1e-12)


def test_band_along_two_opposite_walls_is_border():
    m = np.zeros((N, N))
    m[:2, :] = 1.0  # bottom wall
    m[-2:, :] = 0.8  # top wall
    b = border_score(m)
    assert b > BORDER_THRESHOLD
    np.testing.assert_allclose(b, expected_border(1.0, m), atol=1e-12)


def test_partial_wall_and_nan_wall_bins():
    m = np.zeros((N, N))
    m[:10, :2] = 1.0  # covers half of the left wall
    np.testing.assert_allclose(border_score(m), expected_border(0.5, m), atol=1e-12)
    m[10:, 0] = np.nan  # unvisited bins do not count as wall bins
    np.testing.assert_allclose(border_score(m), expected_border(1.0, np.nan_to_num(m)), atol=1e-12)


def test_central_blob_is_not_border():
    c = np.arange(N) - (N - 1) / 2
    m = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * 2.0**2))
    assert border_score(m) == pytest.approx(-1.0)  # CM = 0: the field touches no wall


def test_no_field_gives_nan():
    assert np.isnan(border_score(np.zeros((N, N))))  # peak <= 0
    assert np.isnan(border_score(np.full((N, N), 2.0)))  # constant: no modulation
    tiny = np.zeros((N, N))
    tiny[5:7, 5:8] = 1.0  # 6 bins < min_field_bins = 8
    assert np.isnan(border_score(tiny))
    assert not np.isnan(border_score(tiny, min_field_bins=6))
    diagonal = np.zeros((N, N))
    diagonal[5:7, 5:8] = diagonal[7:9, 8:11] = 1.0  # two 6-bin fields touching at a corner
    assert np.isnan(border_score(diagonal))  # 4-connectivity keeps them apart


def test_border_scores_stack_matches_single():
    rng = np.random.default_rng(4)
    maps = np.maximum(rng.standard_normal((6, N, N)), 0)
    maps[0, :, :3] += 5.0
    maps[1, 8:12, 8:12] += 5.0
    stacked = border_scores(maps)
    single = [border_score(m) for m in maps]
    np.testing.assert_allclose(stacked, single, equal_nan=True)
    assert stacked[0] > BORDER_THRESHOLD and stacked[1] < 0


def test_border_validation_messages():
    with pytest.raises(ValueError, match=r"ratemap must be 2-D.*border_scores\(\)"):
        border_score(np.zeros((1, N, N)))
    with pytest.raises(ValueError, match="field_threshold must be in"):
        border_score(np.zeros((N, N)), field_threshold=1.5)


# ------------------------------------------------------------------ fractions


def test_fraction_above_counts_nan_as_not_above():
    scores = np.array([0.9, 0.31, 0.3, np.nan, -1.0])
    assert fraction_above(scores, GRID_THRESHOLD) == pytest.approx(2 / 5)
    assert fraction_above(scores, BORDER_THRESHOLD) == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        fraction_above(np.array([]), 0.3)


def test_strict_overlap_rejects_smooth_random_fields_but_keeps_hexagons():
    """Documents the conventional scorer's false positives and the strict SAC's fix (bench/grid_score_null.py)."""
    rng = np.random.default_rng(1)
    smooth = np.stack([scipy.ndimage.gaussian_filter(rng.normal(size=(20, 20)), 2.0) for _ in range(120)])
    strict = int(np.ceil(spatial_scores.STRICT_MIN_OVERLAP_FRACTION * 400))
    conventional_fp = spatial_scores.fraction_above(spatial_scores.grid_scores(smooth)["score60"], 0.3)
    strict_fp = spatial_scores.fraction_above(spatial_scores.grid_scores(smooth, min_overlap=strict)["score60"], 0.3)
    assert conventional_fp > 0.12 and strict_fp < 0.08
    y, x = np.mgrid[0:20, 0:20] + 0.5
    k = 2 * np.pi / 8.0
    hexagon = np.maximum(sum(np.cos(k * (x * np.cos(t) + y * np.sin(t))) for t in np.deg2rad([10, 70, 130])), 0)
    assert spatial_scores.grid_scores(hexagon[None], min_overlap=strict)["score60"][0] > 1.0
