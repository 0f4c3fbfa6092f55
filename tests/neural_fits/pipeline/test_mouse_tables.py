"""Table 3.3 columns on planted recordings (known best layer per area; calcium leaves VISrl out of the pooled column),
the Fig. 3.1 mapping comparison, the per-area plots and the Chapter 3 fit defaults."""

import json
import os

import numpy as np
import pytest

from goaldriven.neural_fits.data import allen_arrays, synthetic
from goaldriven.neural_fits.pipeline import mouse_fit, mouse_tables
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.fitting import FitResult
from goaldriven.neural_fits.pipeline.mouse_tables import Chapter3Fit
from goaldriven.neural_fits.pipeline.stimuli import Presentation

AREAS = {"VISp": "early", "VISl": "late", "VISrl": "early"}
FAST = dict(n_components=5, n_splits=2, n_boot=4)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    features = {"early": rng.standard_normal((40, 30)), "late": rng.standard_normal((40, 30))}
    data = synthetic.simulate_recordings(
        features,
        areas=AREAS,
        n_animals=3,
        units_per_animal=6,
        n_trials=8,
        noise_std=0.7,
        time_bins_ms=[[0.0, 250.0]],
        time_profile="flat",
        seed=1,
    )
    store = FeatureStore(
        {name: x[:, None].astype(np.float32) for name, x in features.items()},
        stimulus_ids=data.stimulus_ids,
        presentation=Presentation(),
    )
    return store, data


@pytest.mark.parametrize("modality, pooled_areas", [("calcium", ("VISp", "VISl")), ("neuropixels", tuple(AREAS))])
def test_table_columns_find_the_planted_layers(planted, modality, pooled_areas, tmp_path):
    store, data = planted
    spec = Chapter3Fit(modality=modality, **FAST)
    fit = mouse_fit.chapter3_fit(store, data, spec, str(tmp_path), model_name="planted", log=lambda _: None)
    columns = fit.columns
    assert {a: e["best_layer"] for a, e in columns["areas"].items()} == AREAS
    assert [a for a, e in columns["areas"].items() if e["in_pooled"]] == list(pooled_areas)
    assert columns["pooled"]["n"] == 18 * len(pooled_areas)  # 3 animals x 6 units per pooled area
    pooled = [
        r["noise_corrected"] for r in fit.result.rows if r["area"] in pooled_areas and r["layer"] == AREAS[r["area"]]
    ]
    assert columns["pooled"]["median"] == pytest.approx(np.nanmedian(pooled))
    assert columns["column"] == {"calcium": "Calcium", "neuropixels": "Neuropixels"}[modality]
    ceiling = columns["inter_animal_ceiling"]
    assert ceiling["n"] == columns["pooled"]["n"] and ceiling["median"] > 0.2
    assert columns["fraction_of_ceiling"] == pytest.approx(columns["pooled"]["median"] / ceiling["median"])
    assert columns["markdown"].startswith("| planted | VISp: early, VISl: late, VISrl: early | ")
    for name in ("mouse_table.json", "mouse_table.md", "mouse_areas.png", "summary.json", "units.csv"):
        assert os.path.exists(tmp_path / name), name
    with open(tmp_path / "summary.json") as f:
        assert set(json.load(f)["inter_animal_consistency"]) == set(AREAS)


def test_pooling_uses_each_area_at_its_own_best_layer():
    rows = [
        dict(area=area, layer=layer, noise_corrected=value, unit_id=f"{area}{k}", time="0-250 ms")
        for area, best in (("VISp", "a"), ("VISrl", "b"))
        for layer in ("a", "b")
        for k, value in enumerate([0.9, 0.8, 0.7] if layer == best else [0.1, 0.2, 0.3])
    ]
    result = FitResult(rows=rows, summary={"best_layer": {"VISp": "a", "VISrl": "b"}})
    ceiling = {"VISp": {"values": np.array([1.0, 1.0, 1.0])}, "VISrl": {"values": np.array([0.5, 0.5, 0.5])}}
    calcium = mouse_tables.table_columns(result, ceiling, Chapter3Fit(modality="calcium"))
    assert calcium["pooled"]["median"] == pytest.approx(0.8) and calcium["pooled"]["n"] == 3
    assert calcium["fraction_of_ceiling"] == pytest.approx(0.8)
    neuropixels = mouse_tables.table_columns(result, ceiling, Chapter3Fit(modality="neuropixels"))
    assert neuropixels["pooled"]["n"] == 6 and neuropixels["inter_animal_ceiling"]["median"] == pytest.approx(0.75)


def test_mapping_comparison_scores_every_mapping(planted, tmp_path):
    _, data = planted
    spec = Chapter3Fit(**FAST)
    comparison = mouse_tables.mapping_comparison(data, spec, log=lambda _: None)
    assert list(comparison["mappings"]) == ["pls", "ridge", "one_to_one", "rsa"]
    assert comparison["unit"]["rsa"] == "animals" and comparison["mappings"]["rsa"]["VISp"]["n"] == 3
    for name, per_area in comparison["mappings"].items():
        assert set(per_area) == set(AREAS), name
        assert all(-0.5 < s["median"] < 1.5 for s in per_area.values()), (name, per_area)
    assert all(0 < s["median"] <= 1 for s in comparison["reliability"].values())
    from goaldriven.neural_fits.pipeline import mouse_plots

    mouse_plots.plot_mapping_comparison(comparison, str(tmp_path / "comparison.png"))
    assert os.path.getsize(tmp_path / "comparison.png") > 0


def test_chapter3_defaults():
    class Model:
        neural_fit_layers = ("VISp", "ventral", "dorsal", "VISpor", "VISam")

    config = Chapter3Fit().fit_config(model=Model())
    assert config.layers == Model.neural_fit_layers and config.mapping_kwargs == {"n_components": 25}
    assert (config.train_fraction, config.n_splits, config.n_boot, config.per_animal) == (0.5, 10, 100, True)
    assert config.spearman_brown and Chapter3Fit().fit_config().layers is None
    with pytest.raises(ValueError, match="modality"):
        Chapter3Fit(modality="fmri")


@pytest.mark.parametrize("modality", ["neuropixels", "calcium"])
def test_default_window_takes_the_allen_readers_response_bin(modality):
    # The Allen readers' bins: Neuropixels rates in 10 ms bins from 0 (averaged in the selected window), calcium one
    # bin for AllenSDK's mean sweep response (two presentation lengths, 0-500 ms by default).
    rng = np.random.default_rng(0)
    shape = (4, 118, 3) if modality == "calcium" else (4, 118, 3, 25)
    bins = {} if modality == "calcium" else {"bin_width_ms": 10.0}
    data = allen_arrays.from_allen_arrays(rng.poisson(3.0, shape).astype(float), area="VISp", specimen="m1", **bins)
    config = Chapter3Fit(modality=modality).fit_config()
    a, b = config.window_ms
    inside = [i for i, (s, e) in enumerate(data.time_bins_ms) if s >= a and e <= b]
    assert inside == list(range(len(data.time_bins_ms)))  # every response bin the reader wrote is scored
