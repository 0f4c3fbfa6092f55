"""The `isolated` marker (tests/isolation.py): the call runs in a child process whose verdict becomes the test's."""

import os
import types

import pytest

from tests import isolation, slow_suite


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


def test_slow_suite_groups_cover_every_test_file_once():
    files = []
    for name, group in slow_suite.GROUPS:
        for path in slow_suite.group_paths(group):
            full = os.path.join(slow_suite.REPO, path)
            walked = [os.path.join(d, f) for d, _, fs in os.walk(full) for f in fs] if os.path.isdir(full) else [full]
            files += [os.path.relpath(f, slow_suite.REPO) for f in walked if os.path.basename(f).startswith("test_")]
    every = [
        os.path.relpath(os.path.join(d, f), slow_suite.REPO)
        for d, _, fs in os.walk(slow_suite.TESTS)
        for f in fs
        if f.startswith("test_") and f.endswith(".py")
    ]
    assert sorted(f for f in files if f.endswith(".py")) == sorted(every)
