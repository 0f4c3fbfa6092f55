"""The notebook call: a built model and its input spec, in-memory features, no files; shuffled labels at chance."""

import numpy as np

from goaldriven.models import zoo
from goaldriven.tasks.base import InputSpec
from goaldriven.transfer import ReadoutConfig, TransferConfig, evaluate, evaluate_model
from goaldriven.transfer.dtd import DTDImages
from goaldriven.transfer.hvm import load_hvm
from tests.transfer import fabricated


def test_a_model_and_its_input_spec_score_the_tasks_without_files(tmp_path):
    hvm = load_hvm(fabricated.write_hvm(str(tmp_path / "hvm.h5"), per_level=(3, 8, 8)))
    labels = np.repeat(np.arange(3), 12)
    pixels = np.clip(
        np.random.default_rng(0).normal(40 + 60 * labels[:, None, None, None], 10, (36, 64, 64, 3)), 0, 255
    )
    folds = [(np.flatnonzero(np.arange(36) % 3), np.flatnonzero(np.arange(36) % 3 == 0))]
    dtd = DTDImages(pixels.astype(np.uint8), labels, np.arange(36).astype(str), folds, "test")
    model = zoo.build_model("small_resnet8", num_classes=10, image_size=16)
    config = TransferConfig(layers=("stage1_block1", "pool"), n_splits=1, readout=ReadoutConfig(cv_folds=3))
    lines = []
    run = evaluate_model(model, InputSpec(16, 0.5, 0.25), hvm=hvm, dtd=dtd, config=config, log=lines.append)
    assert run.paths == [] and run.folder is None
    assert set(run.results["best"]) == set(evaluate.TASK_ORDER)
    assert set(run.results["layers"]["pose"]) == {"stage1_block1", "pool"}
    assert run.results["best"]["texture"]["mean"] > 0.9  # brightness codes the texture class
    assert any(line.startswith("transfer: size ") for line in lines)  # a progress line per task and layer


def test_shuffled_categories_score_at_chance(tmp_path):
    hvm = load_hvm(fabricated.write_hvm(str(tmp_path / "hvm.h5"), per_level=(3, 10, 10), objects=3))
    features = np.asarray(hvm.images[()], np.float32).reshape(len(hvm), -1)
    task = evaluate.TASKS["categorization"]
    config = ReadoutConfig(c_grid=(1e-3, 1.0), cv_folds=3, max_components=50)
    scores = {}
    for shuffle in (False, True):
        data = {task.name: evaluate.task_data(task, hvm=hvm, n_splits=5, shuffle_targets=shuffle)}
        scores[shuffle] = evaluate.evaluate_layer([task], features, data, config, log=lambda line: None)[task.name]
    assert scores[False]["mean"] > 0.6  # the category sets the image brightness (chance 0.25)
    assert abs(scores[True]["mean"] - 0.25) < 0.15  # 4 categories
