"""The whole suite with the slow tests, run in groups of test folders, each group in fresh pytest workers.

Usage: python -m tests.slow_suite [-n 2] [--memory-log=PATH] [any pytest option]

`python -m pytest -n 2 --run-slow tests` in one session does not fit 24 GiB: a pytest worker keeps what TensorFlow,
XLA and oneDNN cache for every model it built (compiled clusters, primitives, allocator pools; a full garbage
collection frees none of it), so two workers grew to 11-15 GB each and a watchdog had to kill them (2026-12-05,
`--memory-log`). The growth is spread over hundreds of full-size builds, not a few tests, so this runner groups the
folders (GROUPS) and runs each group as its own `pytest -n 2 --run-slow` session: workers end with their group and
return their memory. Inside a group the most memory-heavy tests run in a child process each
(tests/isolation.py MEMORY_HEAVY). Prints each group's pytest summary and the total; exits 1 if any group failed.
"""

import os
import re
import subprocess
import sys
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
GROUPS = (  # (name, paths relative to tests/); "*" is every other test file and folder
    ("models", ["models"]),
    ("configs", ["test_configs.py", "test_configs_mouse.py", "test_rule_configs.py", "test_config_paths.py"]),
    ("tasks", ["tasks"]),
    ("importers", ["importers", "test_import_release.py"]),
    ("rest", ["*"]),
)


def group_paths(group: list[str]) -> list[str]:
    if group != ["*"]:
        return [os.path.join("tests", p) for p in group]
    named = {p for _, paths in GROUPS for p in paths}
    entries = sorted(os.listdir(TESTS))
    keep = [e for e in entries if e not in named and (e.startswith("test_") and e.endswith(".py") or _is_package(e))]
    return [os.path.join("tests", e) for e in keep]


def _is_package(entry: str) -> bool:
    """A folder of tests (with or without __init__.py)."""
    path = os.path.join(TESTS, entry)
    return (
        os.path.isdir(path)
        and not entry.startswith(("_", "."))
        and any(f.startswith("test_") for _, _, files in os.walk(path) for f in files)
    )


def main(argv: list[str]) -> int:
    args = argv or ["-n", "2"]
    began, failed, totals = time.perf_counter(), [], {}
    for name, group in GROUPS:
        start = time.perf_counter()
        command = [sys.executable, "-m", "pytest", "--run-slow", "-q", "-p", "no:randomly", *args, *group_paths(group)]
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        summary = next(
            (line for line in reversed(proc.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", line)), ""
        )
        for count, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary):
            totals[kind] = totals.get(kind, 0) + int(count)
        print(f"{name}: {summary.strip('= ') or 'no summary'} ({time.perf_counter() - start:.0f} s)", flush=True)
        if proc.returncode not in (0, 5):  # 5: nothing collected
            failed.append(name)
            print("\n".join(line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))))
    minutes = (time.perf_counter() - began) / 60
    print(f"slow suite: {', '.join(f'{v} {k}' for k, v in totals.items())} in {minutes:.1f} min", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
