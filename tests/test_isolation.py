"""The `isolated` marker (tests/isolation.py): the call runs in a child process whose verdict becomes the test's."""

import os
import types

import pytest

from tests import isolation


@pytest.mark.isolated
def test_an_isolated_test_runs_in_a_child_process():
    assert os.environ.get(isolation.CHILD_ENV) == "1"


@pytest.mark.slow  # two child processes, each importing TensorFlow
def test_a_childs_failure_and_skip_become_the_tests(request):
    for name, outcome, text in (("test_fails", pytest.fail.Exception, "planted failure"),
                                ("test_skips", pytest.skip.Exception, "planted skip")):  # fmt: skip
        item = types.SimpleNamespace(config=request.config, nodeid=f"tests/isolation_samples.py::{name}")
        with pytest.raises(outcome, match=text):
            isolation.child_run(item)
