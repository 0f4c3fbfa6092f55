"""Memory control for the slow suite: tests marked `isolated` run in a fresh Python process, and `--memory-log`
records every test's resident memory.

A long-lived pytest worker keeps what TensorFlow and XLA cache (compiled clusters, oneDNN primitives, the allocator's
pools), so after a few full-size builds two workers held 11-13 GB each and `--run-slow` did not finish on 24 GiB.
An isolated test's call phase is a child `python -m pytest <node id>` (its fixtures are set up there, not in the
worker), so its memory is returned to the system when it ends. The child's verdict becomes the test's: pass, skip
(with the child's reason) or fail (with the tail of the child's output; a child killed by a signal fails naming it).
Under `--run-slow` the tests matching MEMORY_HEAVY are isolated too: those that each left 0.3 GB or more behind in a
worker (measured with --memory-log on 2026-12-05; full-size deep ResNets, VGG-16 and AlexNet builds, the mouse
models' training steps, the full-size ConvRNNs' XLA compiles). Isolation costs a child's start-up (about 6 s), so
the lighter tests stay in the workers, and every 20 tests the workers return freed heap to the system
(malloc_trim). `--memory-log=PATH` appends one JSON line per test: node id, worker, duration, the worker's RSS after the test and
its peak RSS so far (Linux /proc), so the tests that need isolation can be found.
"""

import ctypes
import fnmatch
import json
import os
import re
import subprocess
import sys
import time

import pytest

CHILD_ENV = "GOALDRIVEN_ISOLATED_CHILD"
MEMORY_HEAVY = (  # node-id patterns ("*": anything; brackets are literal), isolated under --run-slow
    "tests/models/test_resnets.py::*resnet34_v*",
    "tests/models/test_resnets.py::*resnet50_v*",
    "tests/models/test_resnets.py::*resnet101_v*",
    "tests/models/test_resnets.py::*resnet152_v*",
    "tests/tasks/test_mouse_training.py::test_model_trains_under_objective[alexnet_bn-*",
    "tests/tasks/test_mouse_training.py::test_model_trains_under_objective[streamnet_six-*",
    "tests/tasks/test_mouse_training.py::test_model_trains_under_objective[streamnet_dual-supervised]",
    "tests/test_configs.py::*vgg16*",
    "tests/test_configs.py::*imagenet224__alexnet*",
    "tests/test_configs.py::*simclr_ch6__alexnet*__ia*",
    "tests/test_configs_mouse.py::*vgg16*",
    "tests/test_rule_configs.py::test_experiment_trains_two_steps[imagenet__resnet101*",
    "tests/test_rule_configs.py::test_experiment_trains_two_steps[imagenet__resnet152*",
    "tests/models/test_rule_binding.py::*[vgg16]",
    "tests/models/test_rule_binding.py::*[alexnet_tv]",
    "tests/models/test_rule_binding.py::*[resnet152_v2]",
    "tests/tasks/test_imagenet_experiment.py::*",
    "tests/models/test_convrnn_zoo.py::test_train_step_compiles_with_xla[rgc_intermediate_*",
    "tests/models/test_convrnn_zoo.py::test_golden_parameter_count[*_intermediate]",
    "tests/models/test_learning_rules.py::*resnet50_v2*",
    "tests/models/test_learning_rules.py::*[alexnet]",
    "tests/importers/test_convrnns.py::test_full_size_release_loads[intersectionrnn_intermediate]",
)
_FORWARDED = ("--run-slow", "--run-tpu")


def release_free_heap() -> None:
    """Returns the C heap's free pages to the system (glibc's malloc_trim; a no-op elsewhere): TensorFlow frees
    tensors to malloc, which keeps them mapped, so a worker's RSS only grows without it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def add_options(parser) -> None:
    parser.addoption("--memory-log", default=None, help="append per-test JSON lines (duration, RSS) to this file")


def configure(config) -> None:
    config.addinivalue_line("markers", "isolated: runs in a fresh Python process (memory-heavy; tests/isolation.py)")


def _status_gb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in GB (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def child_run(item) -> None:
    """The call phase of an isolated test: the same node id in a child process (module docstring)."""
    config = item.config
    command = [sys.executable, "-m", "pytest", item.nodeid, "-p", "no:xdist", "-q", "-rs", "--no-header"]
    command += [option for option in _FORWARDED if config.getoption(option.lstrip("-").replace("-", "_"))]
    env = {**os.environ, CHILD_ENV: "1"}
    proc = subprocess.run(command, cwd=str(config.rootpath), env=env, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode < 0:
        pytest.fail(f"isolated child killed by signal {-proc.returncode} (out of memory?):\n{output[-3000:]}", False)
    if proc.returncode == 0:
        if re.search(r"\b1 skipped\b", output) and not re.search(r"\b1 passed\b", output):
            reason = re.search(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", output)
            pytest.skip(reason.group(1) if reason else "skipped in the isolated child")
        return
    pytest.fail(f"isolated child exited with code {proc.returncode}:\n{output[-6000:]}", pytrace=False)


def isolate(items, run_slow: bool) -> None:
    """Routes the call phase of `isolated` items (and of MEMORY_HEAVY ones under --run-slow) to a child process
    (not inside a child)."""
    if os.environ.get(CHILD_ENV):
        return
    for item in items:
        heavy = run_slow and any(fnmatch.fnmatchcase(item.nodeid, p.replace("[", "[[]")) for p in MEMORY_HEAVY)
        if heavy:
            item.add_marker(pytest.mark.isolated)
        if "isolated" in item.keywords and isinstance(item, pytest.Function):
            item.setup = lambda: None  # fixtures are set up in the child
            item.runtest = lambda item=item: child_run(item)


class MemoryLog:
    """Per-test JSON lines (module docstring)."""

    def __init__(self, path: str):
        self.path = path

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        del nextitem
        began = time.perf_counter()
        yield
        record = {
            "test": item.nodeid,
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "seconds": round(time.perf_counter() - began, 2),
            "isolated": "isolated" in item.keywords,
            "rss_gb": _status_gb("VmRSS"),
            "peak_rss_gb": _status_gb("VmHWM"),
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
