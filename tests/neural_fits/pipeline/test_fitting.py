"""The fitting pipeline: best layers, noise-corrected scores near the known truth, files, and clear errors."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from goaldriven.neural_fits.data import synthetic
from goaldriven.neural_fits.pipeline import fitting as run
from goaldriven.neural_fits.pipeline import report
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation


def _quiet(_):
    pass


def _recordings(n_stimuli, seed, with_stimuli=False, **settings):
    """Recordings simulated from the fixed random network on `n_stimuli` images (flat time courses), and a store
    of the network's features; `settings` go to synthetic.simulate_recordings."""
    images, labels = synthetic.default_images(n_stimuli=n_stimuli, n_categories=4, seed=seed)
    hidden = synthetic.random_network_features(images)
    data = synthetic.simulate_recordings(
        hidden,
        stimulus_labels=labels,
        stimuli=images if with_stimuli else None,
        time_profile="flat",
        seed=seed,
        **settings,
    )
    store = FeatureStore(
        {k: v[:, None] for k, v in hidden.items()}, stimulus_ids=data.stimulus_ids, presentation=Presentation()
    )
    return data, store


@pytest.fixture(scope="module")
def simulated():
    """240 stimuli; area V4 reads layer1 and IT layer2 of the fixed random network; 3 animals x 6 units, 10 trials, noise s.d. 6 per 10 ms bin."""
    areas = {"V4": "layer1", "IT": "layer2"}
    return _recordings(240, 0, True, areas=areas, n_animals=3, units_per_animal=6, n_trials=10, noise_std=6.0)


def test_window_fit_finds_the_generating_layers_and_scores_them_near_one(simulated):
    data, store = simulated
    config = run.FitConfig(mapping="ridge", n_splits=3, n_boot=10, spearman_brown=False, inter_animal=False)
    result = run.fit_recordings(store, data, config, log=_quiet)
    assert result.summary["best_layer"] == {"IT": "layer2", "V4": "layer1"}
    for area, layer in (("V4", "layer1"), ("IT", "layer2")):
        stats = result.summary["areas"][area][layer]["70-170 ms"]
        # Ridge on the generating features predicts the noise-free signal: the ch2 estimator (eq. 2.17) gives ~1,
        # while the raw correlation is capped by the trial noise (10 trials x 10 bins at noise 6: reliability 1 / 1.36).
        assert 0.85 < stats["noise_corrected"]["median"] < 1.1
        assert stats["raw"]["median"] < stats["noise_corrected"]["median"] - 0.08
    assert len(result.rows) == data.num_units * 2


def test_per_animal_mappings_equal_per_area_ones_for_ridge(simulated):
    """Ridge fits every target unit on its own, so grouping the targets by animal cannot change any score; PLS
    shares its components among the targets of one fit, so there the grouping shows."""
    data, store = simulated

    def scores(mapping, per_animal, **kwargs):
        config = run.FitConfig(
            mapping=mapping,
            mapping_kwargs=kwargs,
            n_splits=2,
            n_boot=4,
            layers=("layer2",),
            inter_animal=False,
            per_animal=per_animal,
        )
        rows = run.fit_recordings(store, data, config, log=_quiet).rows
        return {(r["unit_id"], r["time"]): r["noise_corrected"] for r in rows}

    pooled, split = scores("ridge", False), scores("ridge", True)
    assert pooled.keys() == split.keys() and len(pooled) == data.num_units
    np.testing.assert_allclose([split[k] for k in pooled], list(pooled.values()), rtol=1e-9)
    pooled, split = scores("pls", False, n_components=2), scores("pls", True, n_components=2)
    assert not np.allclose([split[k] for k in pooled], list(pooled.values()), rtol=1e-3)


def test_reliability_correction_and_inter_animal_consistency(simulated):
    data, store = simulated
    config = run.FitConfig(
        mapping="ridge", n_splits=2, n_boot=10, noise_correction="reliability", layers=("layer2",), areas=("IT",)
    )
    result = run.fit_recordings(store, data, config, log=_quiet)
    rows = result.rows
    units = np.flatnonzero(data.area == "IT")
    # Flat time courses of unit signal variance averaged over the 10 bins of 70-170 ms and 10 trials: the
    # Spearman-Brown split-half reliability is 1 / (1 + sigma^2 / 100) (two halves of 5 trials, SB-corrected).
    noise_variance = np.asarray(data.attrs["per_unit"]["noise_variance"])[units]
    np.testing.assert_allclose([r["reliability"] for r in rows], 1 / (1 + noise_variance / 100), atol=0.06)
    np.testing.assert_allclose(
        [r["noise_corrected"] for r in rows], [r["raw"] / np.sqrt(r["reliability"]) for r in rows]
    )
    consistency = result.summary["inter_animal_consistency"]["IT"]["70-170 ms"]
    assert consistency["n"] == len(units) and consistency["median"] > 0.5
    assert consistency["fraction_of_inter_animal"] == pytest.approx(
        result.summary["areas"]["IT"]["layer2"]["70-170 ms"]["noise_corrected"]["median"] / consistency["median"]
    )


def test_fixed_and_varying_modes_give_per_bin_rows_and_files(simulated, tmp_path):
    data, store = simulated
    for mode, correction in (("fixed", "reliability"), ("varying", "split_half")):
        config = run.FitConfig(
            mapping="ridge",
            temporal=mode,
            bins_ms=(60, 90),
            n_splits=2,
            n_boot=4,
            noise_correction=correction,
            layers=("layer1",),
            areas=("V4",),
            inter_animal=False,
        )
        result = run.fit_recordings(store, data, config, log=_quiet)
        assert sorted({r["time"] for r in result.rows}) == ["60 ms", "70 ms", "80 ms"]
        paths = report.write_all(result, str(tmp_path / mode))
        assert any(p.endswith("time_courses.png") for p in paths)
        with open(paths[0]) as f:
            table = list(csv.DictReader(f))
        assert len(table) == 6 * 3 * 3 and {row["best_layer"] for row in table} == {"1"}
        with open(paths[1]) as f:
            assert json.load(f)["best_layer"] == {"V4": "layer1"}


def test_errors_name_the_problem(simulated):
    data, store = simulated
    other = FeatureStore(
        {"layer1": store["layer1"][:10]}, stimulus_ids=store.stimulus_ids[:10], presentation=store.presentation
    )
    with pytest.raises(ValueError, match="stimuli"):
        run.fit_recordings(other, data, run.FitConfig(), log=_quiet)
    with pytest.raises(ValueError, match="unknown layers"):
        run.fit_recordings(store, data, run.FitConfig(layers=("conv9",)), log=_quiet)
    with pytest.raises(ValueError, match="no units in areas"):
        run.fit_recordings(store, data, run.FitConfig(areas=("MT",)), log=_quiet)
    with pytest.raises(ValueError, match="noise_correction='reliability'"):
        run.FitConfig(mapping="factored")
    with pytest.raises(ValueError, match="unknown mapping"):
        run.FitConfig(mapping="svm")
    with pytest.raises(ValueError, match="no time bin lies inside"):
        run.fit_recordings(store, data, run.FitConfig(window_ms=(300, 400)), log=_quiet)


def test_factored_readout_runs_through_the_pipeline_on_feature_maps():
    """Spatial maps (n, t, h, w, c) reach the factored readout unflattened (read lazily through the store)."""
    rng = np.random.default_rng(3)
    maps = rng.standard_normal((160, 4, 4, 3)).astype(np.float32)
    mask, channels = rng.uniform(size=(4, 4)), rng.standard_normal(3)
    signal = np.einsum("nhwc,hw,c->n", maps, mask, channels)[:, None]  # one planted factored unit
    data = synthetic.simulate_recordings(
        {"maps": signal}, areas={"V1": "maps"}, n_animals=1, units_per_animal=1, n_trials=8, time_profile="flat", seed=0
    )
    store = FeatureStore({"maps": maps[:, None]}, stimulus_ids=data.stimulus_ids, presentation=Presentation())
    config = run.FitConfig(
        mapping="factored",
        mapping_kwargs=dict(dropout=0.0, learning_rate=0.05, epochs=60, validation_fraction=0.0, jit_compile=False),
        temporal="fixed",
        bins_ms=(70, 100),
        noise_correction="reliability",
        n_splits=2,
        n_boot=4,
        inter_animal=False,
    )
    result = run.fit_recordings(store, data, config, log=_quiet)
    assert sorted({r["time"] for r in result.rows}) == ["70 ms", "80 ms", "90 ms"]
    assert min(r["raw"] for r in result.rows) > 0.8  # the readout finds the planted unit (noise: 1 / 8 trials)


def test_layers_larger_than_the_memory_budget_reach_pls_through_a_streamed_gram():
    rng = np.random.default_rng(4)
    hidden = rng.standard_normal((60, 150)).astype(np.float32)  # p > n: the kernel path
    data = synthetic.simulate_recordings(
        {"wide": hidden}, areas={"IT": "wide"}, n_animals=2, units_per_animal=3, n_trials=6, time_profile="flat", seed=1
    )
    store = FeatureStore({"wide": hidden[:, None]}, stimulus_ids=data.stimulus_ids, presentation=Presentation())
    scores = []
    for budget in (2**30, 4 * 60 * 150 - 1):  # in memory; streamed in blocks
        config = run.FitConfig(
            mapping="pls", mapping_kwargs={"n_components": 3}, n_splits=2, n_boot=4, max_feature_bytes=budget
        )
        scores.append([r["noise_corrected"] for r in run.fit_recordings(store, data, config, log=_quiet).rows])
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-7)


def test_mapping_options_are_checked_when_the_config_is_made():
    with pytest.raises(ValueError, match=r"mapping 'pls' does not accept option\(s\) \['alpha'\]") as error:
        run.FitConfig(mapping="pls", mapping_kwargs={"alpha": 1})
    assert "n_components" in str(error.value) and "max_iter" in str(error.value)  # the options it does accept
    with pytest.raises(ValueError, match=r"mapping 'ridge' option\(s\) \{'alpha': -1\}: alpha must be > 0"):
        run.FitConfig(mapping="ridge", mapping_kwargs={"alpha": -1})
    assert run.FitConfig(mapping="ridge", mapping_kwargs={"alpha": 10.0}).mapping_kwargs == {"alpha": 10.0}


def _small(n_animals, units_per_animal, n_trials=4, seed=0):
    """Recordings of area V1 reading layer1 of the random network on 80 images, and the network's features."""
    return _recordings(
        80, seed, areas={"V1": "layer1"}, n_animals=n_animals, units_per_animal=units_per_animal, n_trials=n_trials
    )


def test_too_few_source_units_for_the_inter_animal_mapping_fail_before_the_layer_fits():
    data, store = _small(n_animals=2, units_per_animal={"V1": 5})
    lines = []
    with pytest.raises(ValueError) as error:
        run.fit_recordings(store, data, run.FitConfig(n_splits=2, n_boot=2), log=lines.append)
    message = str(error.value)
    assert "area V1: animal 'animal0' would be predicted from the 5 units of the other animals (pooled)" in message
    assert "mapping 'pls' (n_components=25) needs >= 25 source units" in message
    assert "--mapping_options=n_components=5" in message and "--inter_animal=false" in message
    assert not [line for line in lines if line.startswith("fit ")]  # failed before the first layer fit
    # Pairwise, each other animal alone is the source: 3 x 12 units suffice pooled (24), not pairwise (12).
    data, store = _small(n_animals=3, units_per_animal={"V1": 12})
    config = dict(mapping_kwargs={"n_components": 20}, n_splits=2, n_boot=2, layers=("layer1",))
    with pytest.raises(ValueError, match=r"the 12 units of animal 'animal[12]' alone \(pairwise\).*needs >= 20"):
        run.fit_recordings(store, data, run.FitConfig(inter_animal_mode="pairwise", **config), log=_quiet)
    run.fit_recordings(store, data, run.FitConfig(**config), log=_quiet)  # pooled: 24 source units, enough


def test_unscorable_units_and_areas_are_named_with_the_reason():
    """Two IT units are constant (zero variance); every V4 unit's two trials are anti-correlated (split-half
    reliability < 0), so no V4 unit has a noise-corrected score and V4 has no best layer: the summary and the log
    say why and name the units."""
    areas = {"V4": "layer1", "IT": "layer2"}
    data, store = _recordings(120, 1, areas=areas, n_animals=2, units_per_animal=3, n_trials=2, noise_std=0.3)
    responses = data.responses.copy()
    it, v4 = np.flatnonzero(data.area == "IT"), np.flatnonzero(data.area == "V4")
    responses[:, it[:2]] = 3.0
    signal = np.random.default_rng(2).standard_normal((120, len(v4), responses.shape[2]))
    responses[:, v4] = np.stack([signal, -signal + 0.1 * np.random.default_rng(3).standard_normal(signal.shape)], -1)
    data = dataclasses.replace(data, responses=responses)
    lines = []
    config = run.FitConfig(mapping="ridge", n_splits=2, n_boot=4, inter_animal=False)
    summary = run.fit_recordings(store, data, config, log=lines.append).summary
    assert summary["best_layer"]["IT"] == "layer2" and summary["best_layer"]["V4"] is None
    unscored = summary["unscored_units"]
    assert unscored["IT"]["70-170 ms"] == {"zero_variance": data.unit_ids[it[:2]].tolist()}
    assert unscored["V4"]["70-170 ms"] == {"reliability_not_positive": data.unit_ids[v4].tolist()}
    reason = summary["best_layer_reason"]["V4"]
    assert "split-half reliability <= 0" in reason and data.unit_ids[v4[0]] in reason
    assert set(summary["best_layer_reason"]) == {"V4"}
    assert any("V4" in line and "reliability <= 0" in line and data.unit_ids[v4[0]] in line for line in lines)
    assert any("IT" in line and "zero variance" in line and data.unit_ids[it[0]] in line for line in lines)


def test_an_area_whose_responses_are_all_constant_is_refused_before_the_fits(simulated):
    data, store = simulated
    lines = []
    responses = data.responses.copy()
    responses[:, data.area == "V4"] = 0.0
    constant = dataclasses.replace(data, responses=responses)
    with pytest.raises(ValueError) as error:
        run.fit_recordings(store, constant, run.FitConfig(mapping="ridge", n_splits=2, n_boot=2), log=lines.append)
    message = str(error.value)
    assert "every unit of area(s) ['V4'] has constant responses over the stimuli (zero variance)" in message
    assert "--areas=IT" in message and not [line for line in lines if line.startswith("fit ")]


def test_the_brain_score_aggregation_is_selectable_and_reported(simulated):
    data, store = simulated
    results = {}
    for aggregation in ("median_of_unit_means", "mean_of_split_medians"):
        config = run.FitConfig(mapping="ridge", n_splits=3, n_boot=4, aggregation=aggregation)
        results[aggregation] = run.fit_recordings(store, data, config, log=_quiet).summary
    default, brain_score = results["median_of_unit_means"], results["mean_of_split_medians"]
    assert brain_score["aggregation"]["name"] == brain_score["config"]["aggregation"] == "mean_of_split_medians"
    assert default["best_layer"] == brain_score["best_layer"] == {"IT": "layer2", "V4": "layer1"}
    for area, layer in (("V4", "layer1"), ("IT", "layer2")):
        entry, same = brain_score["areas"][area][layer]["70-170 ms"], default["areas"][area][layer]["70-170 ms"]
        assert entry["noise_corrected"] == same["noise_corrected"]  # the per-unit statistics do not change ...
        assert same["score"] == same["noise_corrected"]["median"]  # ... the default score is their median ...
        assert entry["score"] != same["score"] and abs(entry["score"] - same["score"]) < 0.1  # ... this one is not
        animals = brain_score["inter_animal_consistency"][area]["70-170 ms"]
        assert animals["fraction_of_inter_animal"] == pytest.approx(entry["score"] / animals["score"])
