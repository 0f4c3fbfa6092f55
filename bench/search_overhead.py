"""Benchmark: what goaldriven-search costs per trial next to what a trial costs, and how workers scale.

Reference: issue 16 (thesis searches ran ~100 TPE trials at once, spec ch2 7.6, ch5 7.2). Figures, all on the
PostgreSQL store:

  * overhead per trial: `worker.run_worker` on an objective that only samples the toy space (no work), so the time
    per trial is the scheduler's: counts, fail_stale_trials, ask (TPE with constant liar and a heartbeat thread),
    the cap check, tell, all storage round trips. Median over the trials after the random start-up, and the mean.
  * trial length of the tiny search: `--tiny-trials` digits trials under the information-alignment space (the test
    search of tests/search/test_tiny_search.py: 12 steps, 8 px; goaldriven-train subprocesses), from their saved
    search_result.json.
  * throughput: N = 1, 2, 4 `goaldriven-search worker` processes on one toy study (each trial sleeps
    `--toy-seconds`), `--cap` complete trials; trials/minute from the first worker start to the last worker's end
    (worker start-up included), and the ideal N x 60 / toy-seconds.

The server: --storage URL, else $GOALDRIVEN_SEARCH_STORAGE, else a throw-away cluster started here (initdb + pg_ctl on
127.0.0.1; as the `postgres` user when run as root). Writes --out (JSON) and prints the figures.

Usage: python bench/search_overhead.py [--storage URL] [--overhead-trials 60] [--tiny-trials 2] [--toy-seconds 1.0]
       [--cap 24] [--workers 1 2 4] [--out bench/results/search_overhead.json]
"""

import os
import sys

# `python bench/search_overhead.py` puts bench/ first on sys.path, where a script named like a standard module would
# shadow it (bench/ssl.py did, until renamed ssl_step.py): look modules up from the repository root instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import optuna  # noqa: E402

from goaldriven.search import objective, spaces, storage, worker  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_BINDINGS = ["TRAIN_STEPS = 12", "STEPS_PER_LOOP = 6", "WARMUP_STEPS = 2", "CHECKPOINT_EVERY = 6", "IMAGE_SIZE = 8"]


def start_postgres(folder: str) -> tuple[str, list[str]]:
    """A throw-away cluster in `folder`: (URL, stop command)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    binary = lambda name: shutil.which(name) or os.path.join(bins[-1], name)  # noqa: E731
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(folder, "data")
    subprocess.run(as_user + [binary("initdb"), "-D", data, "-U", "search", "--auth=trust", "--no-sync"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(as_user + [binary("pg_ctl"), "-D", data, "-o", options, "-l", f"{folder}/log", "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    return f"postgresql+psycopg2://search@127.0.0.1:{port}/postgres", as_user + [binary("pg_ctl"), "-D", data, "stop"]


def overhead(url: str, trials: int) -> dict:
    """Seconds per trial of the scheduler alone (an objective that only samples)."""
    name = f"bench_overhead_{uuid.uuid4().hex[:8]}"
    worker.create_search(name, worker.SearchConfig(space="toy", root="/nonexistent"), url, log=lambda _: None)
    store = storage.make_storage(url, heartbeat_interval=60)
    study, _ = worker.load_search(name, store)
    stamps = []

    def sample_only(trial):
        spaces.toy_space(trial)
        stamps.append(time.perf_counter())
        return spaces.toy_value(trial.params)

    started = time.perf_counter()
    worker.run_worker(study, sample_only, max_trials=trials, poll_seconds=0.1, log=lambda _: None)
    total = time.perf_counter() - started
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    tpe = gaps[10:]  # after the 10 random start-up trials
    return {
        "trials": trials,
        "mean_seconds": total / trials,
        "median_seconds_random_phase": statistics.median(gaps[:9]),
        "median_seconds_tpe_phase": statistics.median(tpe) if tpe else None,
        "last_10_mean_seconds": statistics.mean(gaps[-10:]),
    }


def tiny_trials(url: str, count: int, folder: str) -> dict:
    """Wall seconds of `count` tiny digits trials (goaldriven-train subprocesses) of the test search."""
    name = f"bench_tiny_{uuid.uuid4().hex[:8]}"
    options = {"schedule": "steps", "batch_sizes": [16, 32], "steps_per_epoch": 2}
    config = worker.SearchConfig(
        space="ia", root=folder, gin_files=[os.path.join(REPO, "gin/experiments/digits__small_resnet8.gin")],
        bindings=TINY_BINDINGS, space_options=options,
    )  # fmt: skip
    worker.create_search(name, config, url, log=lambda _: None)
    study, config = worker.load_search(name, storage.make_storage(url, heartbeat_interval=60))
    run = objective.TrainObjective(root=folder, gin_files=config.gin_files, bindings=config.bindings, space="ia",
                                   space_options=options, log=lambda _: None)  # fmt: skip
    worker.run_worker(study, run, max_trials=count, poll_seconds=1.0, log=lambda _: None)
    seconds = []
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        with open(os.path.join(folder, f"trial_{trial.number}", objective.RESULT_FILE)) as f:
            seconds.append(json.load(f)["seconds"])
    return {"trials": count, "seconds": seconds, "mean_seconds": statistics.mean(seconds)}


def throughput(url: str, workers: int, cap: int, toy_seconds: float) -> dict:
    """Trials/minute of `workers` worker processes on one toy study."""
    name = f"bench_tp_{uuid.uuid4().hex[:8]}"
    worker.create_search(name, worker.SearchConfig(space="toy", root="/nonexistent"), url, log=lambda _: None)
    command = [sys.executable, "-m", "goaldriven.search_cli", "worker", f"--study={name}", f"--storage={url}",
               f"--max_trials={cap}", f"--toy_seconds={toy_seconds}", "--poll_seconds=0.2"]  # fmt: skip
    started = time.perf_counter()
    processes = [subprocess.Popen(command + [f"--worker_name=w{i}"], stdout=subprocess.DEVNULL) for i in range(workers)]
    codes = [p.wait() for p in processes]
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=storage.make_storage(url, heartbeat_interval=None))
    states = worker.counts(study)
    return {
        "workers": workers,
        "exit_codes": codes,
        "complete": states["COMPLETE"],
        "pruned_surplus": states["PRUNED"],
        "wall_seconds": wall,
        "trials_per_minute": 60.0 * states["COMPLETE"] / wall,
        "ideal_trials_per_minute": 60.0 * workers / toy_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", default=os.environ.get(storage.ENV_VAR))
    parser.add_argument("--overhead-trials", type=int, default=60)
    parser.add_argument("--tiny-trials", type=int, default=2)
    parser.add_argument("--toy-seconds", type=float, default=1.0)
    parser.add_argument("--cap", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", default=os.path.join(REPO, "bench/results/search_overhead.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = tempfile.mkdtemp(prefix="goaldriven_bench_search_")
    os.chmod(folder, 0o755)
    stop = None
    url = args.storage
    if not url:
        os.makedirs(os.path.join(folder, "pg"))
        url, stop = start_postgres(os.path.join(folder, "pg"))
    try:
        result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "optuna": optuna.__version__},
                  "storage": storage.redact(url).split("@")[-1], "overhead": overhead(url, args.overhead_trials)}  # fmt: skip
        print(f"scheduler overhead per trial: {json.dumps(result['overhead'])}", flush=True)
        if args.tiny_trials:
            result["tiny_search"] = tiny_trials(url, args.tiny_trials, os.path.join(folder, "tiny"))
            ratio = result["overhead"]["mean_seconds"] / result["tiny_search"]["mean_seconds"]
            result["overhead_fraction_of_tiny_trial"] = ratio
            print(f"tiny search trial: {result['tiny_search']['mean_seconds']:.1f} s; overhead {100 * ratio:.2f}%")
        result["throughput"] = []
        for n in args.workers:
            row = throughput(url, n, args.cap, args.toy_seconds)
            result["throughput"].append(row)
            print(f"{n} worker(s): {row['trials_per_minute']:.1f} trials/min (ideal {row['ideal_trials_per_minute']:.0f}); "
                  f"{row['complete']} complete, {row['pruned_surplus']} surplus, {row['wall_seconds']:.1f} s", flush=True)  # fmt: skip
    finally:
        if stop:
            subprocess.run(stop, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
