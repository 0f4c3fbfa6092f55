"""WSN TFRecords: writer/reader round trip, deterministic resumable training order, sharding, one-line errors."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.audio import wsn_data

N, K = 16, 5  # samples per clip, classes


def _examples(count, seed=0):
    rng = np.random.default_rng(seed)
    waves = rng.uniform(-0.9, 0.9, size=(count, N)).astype(np.float32)
    return [
        {"waveform": w, "word": i % K, "speaker": i % 3, "source": "white", "snr_db": 5.0} for i, w in enumerate(waves)
    ]


def _write(path, train=23, test=7, train_shards=3, test_shards=2):
    ex_train, ex_test = _examples(train, 0), _examples(test, 1)
    kw = dict(num_samples=N, num_classes=K, sample_rate=100)
    wsn_data.write_shards(str(path), "train", ex_train, num_shards=train_shards, **kw)
    wsn_data.write_shards(str(path), "test", ex_test, num_shards=test_shards, **kw)
    return ex_train, ex_test


def _key(wave):
    return tuple(np.round(np.asarray(wave) * 32768).astype(int))


def _batches(dataset, count):
    return [{k: v.numpy() for k, v in b.items()} for b in dataset.take(count)]


def test_records_round_trip_with_int16_quantisation_and_metadata(tmp_path):
    _, ex_test = _write(tmp_path)
    data = wsn_data.WSNData(str(tmp_path))
    assert data.num_eval_examples() == 7 and data.num_train_examples() == 23
    assert (data.num_classes, data.null_label, data.sample_rate, data.num_samples) == (K, K - 1, 100, N)
    assert os.path.exists(tmp_path / "wsn-train-00002-of-00003.tfrecord")
    batches = _batches(data.eval_dataset(global_batch_size=4, input_context=None), 10)
    assert len(batches) == 2 and all(b["waveforms"].shape == (4, N) for b in batches)
    weight = np.concatenate([b["weight"] for b in batches])
    waves = np.concatenate([b["waveforms"] for b in batches])[weight == 1]
    labels = np.concatenate([b["labels"] for b in batches])[weight == 1]
    assert weight.sum() == 7
    expected = {_key(e["waveform"]): e["word"] for e in ex_test}
    assert {_key(w): int(y) for w, y in zip(waves, labels)} == expected
    for w in waves:  # quantised to int16 steps, independently computed
        original = next(e["waveform"] for e in ex_test if _key(e["waveform"]) == _key(w))
        np.testing.assert_allclose(w, np.round(original * 32768) / 32768, atol=1e-7)
    record = next(iter(tf.data.TFRecordDataset(str(tmp_path / "wsn-test-00000-of-00002.tfrecord"))))
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    assert feature["speaker"].int64_list.value[0] == 0 and feature["source"].bytes_list.value[0] == b"white"
    assert feature["snr_db"].float_list.value[0] == 5.0


def test_training_order_is_deterministic_resumable_and_epochs_are_permutations(tmp_path):
    ex_train, _ = _write(tmp_path)
    data = wsn_data.WSNData(str(tmp_path), shuffle_window=5, cycle_length=2)

    def stream(start, seed=1, count=16):
        ds = data.train_dataset(global_batch_size=4, input_context=None, start_step=start, seed=seed)
        return _batches(ds, count)

    full = stream(0)
    again = stream(0)
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a["waveforms"], b["waveforms"])
    for start in (3, 7, 11):  # 23 examples per epoch: steps 5-6 and 11 straddle epoch boundaries
        for a, b in zip(stream(start, count=3), full[start : start + 3]):
            np.testing.assert_array_equal(a["waveforms"], b["waveforms"])
            np.testing.assert_array_equal(a["labels"], b["labels"])
    flat = np.concatenate([b["waveforms"] for b in full])
    for epoch in range(2):
        keys = sorted(_key(w) for w in flat[23 * epoch : 23 * (epoch + 1)])
        assert keys == sorted(_key(e["waveform"]) for e in ex_train)
    other = np.concatenate([b["waveforms"] for b in stream(0, seed=2, count=5)])
    assert not np.array_equal(other, flat[:20])
    assert full[0]["waveforms"].dtype == np.float32 and full[0]["labels"].dtype == np.int32


def test_pipelines_read_disjoint_shards_and_evaluation_covers_every_clip_once(tmp_path):
    ex_train, ex_test = _write(tmp_path, train=24, test=9, train_shards=4, test_shards=3)
    data = wsn_data.WSNData(str(tmp_path))
    shard_of = {_key(e["waveform"]): i % 4 for i, e in enumerate(ex_train)}  # writer: example i -> shard i mod 4
    seen_eval, eval_lengths = [], []
    for p in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=p, num_replicas_in_sync=2)
        batches = _batches(data.train_dataset(global_batch_size=4, input_context=ctx, start_step=0, seed=0), 6)
        assert all(b["waveforms"].shape == (2, N) for b in batches)
        shards = {shard_of[_key(w)] for b in batches for w in b["waveforms"]}
        assert shards == {p, p + 2}
        ev = _batches(data.eval_dataset(global_batch_size=4, input_context=ctx), 100)
        eval_lengths.append(len(ev))
        seen_eval += [_key(w) for b in ev for w, m in zip(b["waveforms"], b["weight"]) if m == 1]
    assert eval_lengths[0] == eval_lengths[1]
    assert sorted(seen_eval) == sorted(_key(e["waveform"]) for e in ex_test)


def test_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no wsn-metadata.json.*write_shards"):
        wsn_data.WSNData(str(tmp_path)).num_eval_examples()
    with pytest.raises(ValueError, match=r"word 7 outside \[0, 5\)"):
        wsn_data.write_shards(str(tmp_path / "a"), "train", [{"waveform": np.zeros(N), "word": 7}], num_shards=1,
                              num_samples=N, num_classes=K)  # fmt: skip
    assert os.listdir(tmp_path / "a") == []  # no partial shards left behind
    with pytest.raises(ValueError, match="peak 2.0 is outside"):
        wsn_data.encode_example(np.full(N, 2.0), 0)
    _write(tmp_path / "b")
    with pytest.raises(ValueError, match="fewer shards than the 4 input pipelines"):
        ctx = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=3, num_replicas_in_sync=4)
        wsn_data.WSNData(str(tmp_path / "b")).train_dataset(
            global_batch_size=4, input_context=ctx, start_step=0, seed=0
        )
    os.remove(tmp_path / "b" / "wsn-test-00001-of-00002.tfrecord")
    with pytest.raises(
        FileNotFoundError, match="1 of the 2 'test' shards are missing, first .*wsn-test-00001-of-00002"
    ):
        wsn_data.WSNData(str(tmp_path / "b")).num_eval_examples()
    meta = json.loads((tmp_path / "b" / "wsn-metadata.json").read_text())
    (tmp_path / "b" / "wsn-metadata.json").write_text(json.dumps({**meta, "version": 9}))
    with pytest.raises(ValueError, match="version 9, expected 'goaldriven-wsn' version 1"):
        wsn_data.WSNData(str(tmp_path / "b")).num_train_examples()


@pytest.mark.parametrize(
    "record, message",
    [(wsn_data.encode_example(np.zeros(N), K), "word label >= 5 classes"),
     (wsn_data.encode_example(np.zeros(N), -1), "negative word label"),
     (wsn_data.encode_example(np.zeros(N + 1), 0), "waveform of the wrong length")],
 ids=["label_too_large", "label_negative", "wrong_length"],
)  # fmt: skip
def test_bad_records_fail_with_a_message(tmp_path, record, message):
    _write(tmp_path)
    with tf.io.TFRecordWriter(str(tmp_path / "wsn-test-00000-of-00002.tfrecord")) as writer:
        writer.write(record)
    data = wsn_data.WSNData(str(tmp_path))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _batches(data.eval_dataset(global_batch_size=2, input_context=None), 10)
