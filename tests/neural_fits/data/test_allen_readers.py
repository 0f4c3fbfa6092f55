"""Allen readers on NWB files fabricated with h5py in the documented layouts (docs/allen_data.md; never downloads).

Expected values are computed here with plain loops over the planted traces / spikes, not with the reader's code.
"""

import h5py
import numpy as np
import pytest
import scipy.stats

from goaldriven.neural_fits.data.allen_arrays import from_allen_arrays, trials_by_frame
from goaldriven.neural_fits.data.allen_ecephys import ecephys_running_modulation, read_ecephys_nwb
from goaldriven.neural_fits.data.allen_ophys import ophys_running_modulation, read_ophys_nwb
from goaldriven.neural_fits.data.converters import concatenate_animals
from goaldriven.neural_fits.data.neural_data import NeuralDataError, load_neural_data, save_neural_data

N_IMG, REPS, L = 118, 2, 2  # images, showings per image, imaging frames per presentation


def _schedule(seed):
    """Presentation order: every image (and grey -1) REPS times, shuffled, back to back."""
    frames = np.repeat(np.arange(-1, N_IMG), REPS)
    return np.random.default_rng(seed).permutation(frames)


def _write_ophys(path, frames, version="3.0", with_template=True):
    rng = np.random.default_rng(1)
    P = len(frames)
    starts = 4 * L + 3 + L * np.arange(P)
    T = starts[-1] + 2 * L + 5
    c = 3
    cell = 200.0 + rng.random((c, T)) * 50.0
    neuropil = 20.0 + rng.random((c, T)) * 5.0
    r = np.array([0.7, 0.5, 0.9])
    dff = rng.standard_normal((c, T))
    times = np.arange(T) / 30.0
    speed = rng.random(T - 4) * 3.0  # starts 4 frames late: AllenSDK pads with NaN
    pipe = "processing/brain_observatory_pipeline"
    with h5py.File(path, "w") as f:
        f["stimulus/presentation/natural_scenes_stimulus/data"] = frames.astype(np.int32)
        f["stimulus/presentation/natural_scenes_stimulus/frame_duration"] = np.stack([starts, starts + L], 1)
        if with_template:
            f["stimulus/templates/natural_scenes_image_stack/data"] = rng.integers(0, 256, (N_IMG, 4, 5), np.uint8)
        f[f"{pipe}/ImageSegmentation/cell_specimen_ids"] = np.array([517000001, 517000002, 517000003])
        if version >= "2.0":
            f[f"{pipe}/Fluorescence/imaging_plane_1_demixed_signal/data"] = cell
            f[f"{pipe}/Fluorescence/imaging_plane_1_neuropil_response/data"] = neuropil
            f[f"{pipe}/Fluorescence/imaging_plane_1_neuropil_response/r"] = r
        else:
            f[f"{pipe}/Fluorescence/imaging_plane_1/data"] = cell
            f[f"{pipe}/Fluorescence/imaging_plane_1/neuropil_traces"] = neuropil
            f[f"{pipe}/Fluorescence/imaging_plane_1/r"] = r
        f[f"{pipe}/Fluorescence/imaging_plane_1/timestamps"] = times
        f[f"{pipe}/DfOverF/imaging_plane_1/data"] = dff
        f[f"{pipe}/DfOverF/imaging_plane_1/timestamps"] = times
        f[f"{pipe}/BehavioralTimeSeries/running_speed/data"] = speed
        f[f"{pipe}/BehavioralTimeSeries/running_speed/timestamps"] = times[4:]
        f["general/optophysiology/imaging_plane_1/location"] = b"VISal"
        f["general/optophysiology/imaging_plane_1/imaging depth"] = b"275 microns"
        f["general/specimen_name"] = b"Cux2-CreERT2;Camk2a-tTA;Ai93-222426"
        f["general/session_id"] = b"501498760"
        f["general/generated_by"] = np.array([b"allensdk", version.encode()])
    return dict(starts=starts, cell=cell, neuropil=neuropil, r=r, dff=dff)


@pytest.mark.parametrize("version", ["3.0", "1.0"])
def test_ophys_mean_sweep_response_matches_allensdk_formula(tmp_path, version):
    frames = _schedule(0)
    truth = _write_ophys(tmp_path / "exp.nwb", frames, version)
    data = read_ophys_nwb(tmp_path / "exp.nwb")
    assert data.responses.shape == (N_IMG, 3, 1, REPS)
    F = truth["cell"] - truth["neuropil"] * truth["r"][:, None]
    for image, trial, cell in [(0, 0, 0), (117, 1, 2), (57, 1, 1)]:
        p = np.flatnonzero(frames == image)[trial]  # the trial-th showing in time
        s = truth["starts"][p]
        expected = 100.0 * (F[cell, s : s + 2 * L].mean() / F[cell, s - 4 * L : s].mean() - 1.0)
        assert data.responses[image, cell, 0, trial] == pytest.approx(expected, rel=1e-5)
    assert data.area.tolist() == ["VISal"] * 3 and data.animals() == ["Cux2-CreERT2;Camk2a-tTA;Ai93-222426"]
    assert data.attrs["per_unit"]["allen_id"].tolist() == ["517000001", "517000002", "517000003"]
    assert data.attrs["per_unit"]["imaging_depth_um"].tolist() == [275.0] * 3
    assert data.stimuli.shape == (N_IMG, 4, 5, 1) and data.stimulus_ids[5] == "5"
    assert data.attrs["modality"] == "calcium" and data.time_bins_ms[0, 1] == pytest.approx(1000 * 2 * L / 30)
    assert np.isnan(data.attrs["per_unit"]["p_run_mod_ns"]).all()  # 2 showings: too few for the t-test
    assert read_ophys_nwb(tmp_path / "exp.nwb", stimuli=False).stimuli is None


def test_ophys_dff_response_and_errors(tmp_path):
    frames = _schedule(2)
    truth = _write_ophys(tmp_path / "exp.nwb", frames, with_template=False)
    data = read_ophys_nwb(tmp_path / "exp.nwb", response="dff", specimen="222426", stimuli=np.zeros((N_IMG, 2, 3)))
    p = np.flatnonzero(frames == 9)[1]
    s = truth["starts"][p]
    assert data.responses[9, 1, 0, 1] == pytest.approx(truth["dff"][1, s : s + 2 * L].mean(), rel=1e-5)
    assert data.animals() == ["222426"] and data.stimuli.shape == (N_IMG, 2, 3, 1)
    with h5py.File(tmp_path / "bad.nwb", "w") as f:
        f["general/session_id"] = b"1"
    with pytest.raises(NeuralDataError, match="natural_scenes_stimulus/data"):
        read_ophys_nwb(tmp_path / "bad.nwb")


def _welch_p(a, b):
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * scipy.stats.t.sf(abs(t), dof)


def test_ophys_running_modulation_planted():
    rng = np.random.default_rng(3)
    frames = np.repeat([-1, 0, 1, 2], 12)
    sweeps = rng.standard_normal((2, 48))
    sweeps[:, frames == 1] += 10.0  # image 1 preferred by both cells
    speeds = np.zeros(48)
    shown = np.flatnonzero(frames == 1)
    speeds[shown[:6]] = 5.0  # 6 running, 6 stationary
    sweeps[0, shown[:6]] += 3.0
    p = ophys_running_modulation(sweeps, frames, speeds)
    for cell in (0, 1):
        assert p[cell] == pytest.approx(_welch_p(sweeps[cell, shown[:6]], sweeps[cell, shown[6:]]), rel=1e-8)
    assert p[0] < 0.05
    speeds[shown[:2]] = np.nan  # 4 running left: AllenSDK needs > 4 of each
    assert np.isnan(ophys_running_modulation(sweeps, frames, speeds)).all()


def _write_ecephys(path, frames, frame_as_str=False):
    rng = np.random.default_rng(5)
    P = len(frames)
    onsets = 10.0 + 0.25 * np.arange(P)
    spikes = []
    for unit in range(4):  # spikes at bin centres: onset + 5 ms + 10 ms * b, b planted per presentation
        bins = rng.integers(0, 25, size=(P, 3))
        spikes.append(np.sort((onsets[:, None] + 0.005 + 0.01 * bins).ravel()))
    with h5py.File(path, "w") as f:
        f["units/id"] = np.array([950900001, 950900002, 950900003, 950900004])
        f["units/spike_times"] = np.concatenate(spikes)
        f["units/spike_times_index"] = np.cumsum([len(s) for s in spikes])
        f["units/peak_channel_id"] = np.array([850001, 850002, 850003, 850001])
        f["units/quality"] = np.array([b"good", b"good", b"good", b"noise"])
        f["units/amplitude_cutoff"] = np.array([0.01, 0.05, 0.01, 0.01])
        f["units/presence_ratio"] = np.array([0.99, 0.99, 0.99, 0.99])
        f["units/isi_violations"] = np.array([0.1, 0.1, 0.1, 0.1])
        f["general/extracellular_ephys/electrodes/id"] = np.array([850003, 850001, 850002])
        f["general/extracellular_ephys/electrodes/location"] = np.array([b"CA1", b"VISp", b"VISrl"])
        f["general/extracellular_ephys/electrodes/valid_data"] = np.array([True, True, True])
        order = np.random.default_rng(6).permutation(P)  # rows stored out of time order
        f["intervals/natural_scenes_presentations/start_time"] = onsets[order]
        f["intervals/natural_scenes_presentations/stop_time"] = onsets[order] + 0.25
        column = frames[order].astype(np.float64)
        f["intervals/natural_scenes_presentations/frame"] = column.astype("S8") if frame_as_str else column
        f["processing/running/running_speed/data"] = rng.random(4 * P) * 3
        f["processing/running/running_speed/timestamps"] = 10.0 + 0.0625 * np.arange(4 * P)
        f["general/subject/subject_id"] = b"717038288"
    return onsets, spikes


@pytest.mark.parametrize("frame_as_str", [False, True])
def test_ecephys_rates_areas_and_filters(tmp_path, frame_as_str):
    frames = _schedule(7)
    onsets, spikes = _write_ecephys(tmp_path / "session.nwb", frames, frame_as_str)
    data = read_ecephys_nwb(tmp_path / "session.nwb")
    # unit 3 fails quality, unit 2 sits in CA1 (channel 850003): kept units 0 (VISp) and 1 (VISrl)
    assert data.attrs["per_unit"]["allen_id"].tolist() == ["950900001", "950900002"]
    assert data.area.tolist() == ["VISp", "VISrl"] and data.animals() == ["717038288"]
    assert data.responses.shape == (N_IMG, 2, 25, REPS)
    assert data.time_bins_ms[3].tolist() == [30.0, 40.0]
    for image, trial, unit, b in [(0, 0, 0, 0), (117, 1, 1, 24), (40, 1, 0, 12)]:
        onset = onsets[np.flatnonzero(frames == image)[trial]]
        count = sum(onset + 0.01 * b <= s < onset + 0.01 * (b + 1) for s in spikes[unit])
        assert data.responses[image, unit, b, trial] == pytest.approx(count / 0.01)
    everything = read_ecephys_nwb(tmp_path / "session.nwb", unit_filter=False, areas=("VISp", "VISrl", "CA1"))
    assert everything.num_units == 4


def test_ecephys_running_modulation_planted():
    frames = np.repeat([-1, 0, 1], 5)
    counts = np.ones((2, 15))
    counts[:, frames == 0] = [3, 4, 9, 8, 10]  # image 0 preferred
    counts[1] = 0.0
    counts[1, frames == 0] = [0, 0, 0, 0, 0.0]
    counts[1, frames == 1] = [1, 0, 0, 0, 0]  # unit 1 prefers image 1
    speeds = np.zeros(15)
    speeds[np.flatnonzero(frames == 0)[2:]] = 2.0  # 3 running, 2 stationary
    p = ecephys_running_modulation(counts, frames, speeds)
    assert p[0] == pytest.approx(_welch_p(np.array([9.0, 8, 10]), np.array([3.0, 4])), rel=1e-8)
    assert np.isnan(p[1])  # image 1 has no running trials
    speeds[np.flatnonzero(frames == 0)[3:]] = 0.0  # 1 running: needs >= 2
    assert np.isnan(ecephys_running_modulation(counts, frames, speeds)[0])


def test_trials_by_frame_and_array_path_round_trip(tmp_path):
    frames = np.array([2, -1, 0, 1, 0, 2, 1, -1, 1])
    values = np.arange(9.0)
    trials = trials_by_frame(values, frames, num_scenes=3)
    expected = np.array([[2, 3, 0], [4, 6, 5], [np.nan, 8, np.nan]])  # image 1 shown 3 times, others twice
    np.testing.assert_array_equal(trials, expected)
    rng = np.random.default_rng(8)
    sweeps = rng.random((50, 118, 3))
    a = from_allen_arrays(sweeps, area="VISp", specimen=111, unit_ids=[7, 8, 9], p_run_mod=[0.5, np.nan, 0.01])
    b = from_allen_arrays(sweeps[..., :2], area=["VISl", "VISam"], specimen="222", p_run_mod=[0.2, 0.3])
    merged = concatenate_animals([a, b])
    save_neural_data(tmp_path / "calcium.h5", merged)
    back = load_neural_data(tmp_path / "calcium.h5")
    assert back.unit_ids.tolist() == ["111/7", "111/8", "111/9", "222/0", "222/1"]
    np.testing.assert_array_equal(back.attrs["per_unit"]["p_run_mod_ns"], [0.5, np.nan, 0.01, 0.2, 0.3])
    assert back.responses[5, 4, 0, 49] == np.float32(sweeps[49, 5, 1]) and back.attrs["modality"] == "calcium"
    with pytest.raises(ValueError, match="grey"):
        from_allen_arrays(sweeps[:, :117], area="VISp", specimen=1)
