"""EXTRA_HOOKS: a config adds loop hooks next to the ones its task and rule files bind (cli_config.add_extra_hooks)."""

import pytest

import gin
from goaldriven import cli_config

EXTRA = """from __gin__ import dynamic_registration
from goaldriven.tasks.self_supervised import knn
EXTRA_HOOKS = [@knn.KNNMonitor()]
"""


def _hooks(files, bindings=()):
    try:
        cli_config.parse_gin_config(files, list(bindings), clear=True)
        return [str(h) for h in gin.query_parameter("goaldriven.tasks.loop.run.hooks")]
    finally:
        gin.clear_config()


@pytest.fixture
def extra_file(tmp_path):
    path = tmp_path / "extra.gin"
    path.write_text(EXTRA)
    return str(path)


def test_extra_hooks_come_after_the_rules_hooks(extra_file):
    # digits binds loop.run.hooks = [AlignmentTraining]; the extra file must not replace it
    assert _hooks(["experiments/digits__small_resnet8.gin", extra_file]) == [
        "@training.AlignmentTraining()",
        "@knn.KNNMonitor()",
    ]
    # the order of the files does not matter: the hooks are joined after parsing
    assert _hooks([extra_file, "experiments/digits__small_resnet8.gin"]) == [
        "@training.AlignmentTraining()",
        "@knn.KNNMonitor()",
    ]


def test_extra_hooks_alone_and_absent(extra_file):
    assert _hooks(["experiments/imagenet__resnet18_v1.gin", extra_file]) == ["@knn.KNNMonitor()"]
    assert _hooks(["experiments/digits__small_resnet8.gin"]) == ["@training.AlignmentTraining()"]


def test_extra_hooks_must_be_a_list(tmp_path):
    path = tmp_path / "bad.gin"
    path.write_text(EXTRA.replace("[@knn.KNNMonitor()]", "@knn.KNNMonitor()"))
    with pytest.raises(cli_config.ConfigError, match="must be a list of hooks"):
        _hooks(["experiments/digits__small_resnet8.gin", str(path)])


def test_extra_hooks_on_the_command_line_empty_the_list(extra_file):
    # a command-line EXTRA_HOOKS is not a typo (the macro is read by add_extra_hooks, not by a gin file)
    assert _hooks(["experiments/digits__small_resnet8.gin", extra_file], ["EXTRA_HOOKS = []"]) == [
        "@training.AlignmentTraining()"
    ]
