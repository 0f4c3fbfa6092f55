"""Creating a search once and running workers on it until a cap of completed trials.

`create_search` makes the study (one process: many workers creating the tables at once race, optuna#1092) and keeps
the search's definition in the study's user attributes (space, experiment, bindings, metric, sampler settings), so a
worker on any host needs only the storage URL and the study name. `run_worker` runs trials one at a time through
`study.optimize` (the only way Optuna's heartbeats run) until the study has `max_trials` COMPLETE trials:

  * it starts a trial only while COMPLETE + RUNNING < max_trials or a re-queued (WAITING) trial exists; otherwise it
    waits, failing stale trials itself (a dead worker's trial is re-queued and then run by a waiting worker);
  * a trial that starts at the same instant as another and would exceed the cap is pruned at once (user attribute
    "surplus"), so the COMPLETE count ends equal to the cap;
  * a lost database connection is retried with a one-line message; a trial whose result could not be recorded goes
    stale, is re-queued and returns the result its first run saved in its workdir (objective.py).
"""

import dataclasses
import json
import os
import socket
import time
import warnings
from typing import Any, Callable

import optuna

from goaldriven.search import objective as objective_lib
from goaldriven.search import samplers, spaces, storage

STATES = optuna.trial.TrialState
ATTR = "goaldriven_search"  # the study user attribute holding SearchConfig


@dataclasses.dataclass
class SearchConfig:
    """What a search is: stored in the study so every worker runs the same search.

    space / space_options: `spaces.SPACES` name and keyword options. gin_files / bindings: the experiment and fixed
    bindings (budget, steps). root: folder of the trial workdirs. metric / direction: the score in metrics.json.
    seed, multivariate, constant_liar, hyperopt_compatible, n_startup_trials: the TPE sampler (samplers.py).
    """

    space: str
    root: str
    gin_files: list[str] = dataclasses.field(default_factory=list)
    bindings: list[str] = dataclasses.field(default_factory=list)
    space_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    metric: str = "top1"
    direction: str = "maximize"
    seed: int | None = 0
    multivariate: bool = True
    constant_liar: bool = True
    hyperopt_compatible: bool = False
    n_startup_trials: int | None = None

    def sampler(self, worker: str | None = None) -> optuna.samplers.TPESampler:
        return samplers.make_sampler(
            seed=samplers.worker_seed(self.seed, worker),
            multivariate=self.multivariate,
            constant_liar=self.constant_liar,
            hyperopt_compatible=self.hyperopt_compatible,
            n_startup_trials=self.n_startup_trials,
        )


def create_search(
    study_name: str,
    config: SearchConfig,
    url: str,
    *,
    enqueue: tuple[dict[str, Any], ...] = (),
    log: Callable[[str], None] = print,
) -> optuna.Study:
    """Creates the study and its tables and stores `config`; enqueues known points (e.g. spaces.RGC_MEDIAN) first.

    Raises ValueError when a study of that name exists (a search is created once; workers load it).
    """
    spaces.get_space(config.space)
    store = storage.make_storage(url, heartbeat_interval=None, create_tables=True)
    try:
        study = storage.with_retries(
            lambda: optuna.create_study(
                study_name=study_name, storage=store, sampler=config.sampler(), direction=config.direction
            ),
            what=f"create study {study_name!r}",
            log=log,
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise ValueError(
            f"study {study_name!r} already exists in {storage.redact(url)}; start workers on it, or pick a new name."
        ) from None
    study.set_user_attr(ATTR, dataclasses.asdict(config))
    for params in enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    log(f"created study {study_name!r} in {storage.redact(url)}: space {config.space}, {len(enqueue)} enqueued")
    return study


def load_search(
    study_name: str, store: optuna.storages.BaseStorage, worker: str | None = None
) -> tuple[optuna.Study, SearchConfig]:
    """The study and its SearchConfig, with this worker's seeded sampler; ValueError when the study does not exist."""
    try:
        summaries = optuna.study.get_all_study_names(storage=store)
    except Exception as e:  # pylint: disable=broad-except  No tables yet: the study was never created.
        if storage.is_connection_error(e):
            raise
        summaries = []
    if study_name not in summaries:
        raise ValueError(f"no study {study_name!r} in this storage; create it first: goaldriven-search create ...")
    study = optuna.load_study(study_name=study_name, storage=store)
    config = SearchConfig(**study.user_attrs[ATTR])
    study.sampler = config.sampler(worker)
    return study, config


def counts(study: optuna.Study) -> dict[str, int]:
    """{state name: number of trials} of the study."""
    out = {state.name: 0 for state in STATES}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state.name] += 1
    return out


def _guarded(study: optuna.Study, objective, max_trials: int, worker: str):
    """objective with the cap check of a trial that started together with others (see the module docstring)."""

    def run(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)
        ahead = [
            t
            for t in study.get_trials(deepcopy=False, states=(STATES.COMPLETE, STATES.RUNNING))
            if t.number < trial.number
        ]
        if len(ahead) >= max_trials:
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned(f"{len(ahead)} trials ahead reach the cap of {max_trials}")
        return objective(trial)

    return run


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    max_trials: int,
    poll_seconds: float = 10.0,
    worker: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Runs trials until the study has `max_trials` COMPLETE trials; returns this worker's counts.

    worker: this worker's name in the trials' "worker" user attribute (default host:pid).
    """
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    done = {"trials": 0, "failed": 0, "surplus": 0, "connection_errors": 0}
    callbacks = [optuna.study.MaxTrialsCallback(max_trials, states=(STATES.COMPLETE,))]
    guarded = _guarded(study, objective, max_trials, worker)
    while True:
        try:
            now = counts(study)
            if now["COMPLETE"] >= max_trials:
                break
            if now["COMPLETE"] + now["RUNNING"] >= max_trials and not now["WAITING"]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)  # a dead worker's trial is re-queued here
                time.sleep(poll_seconds)
                continue
            before = len(study.get_trials(deepcopy=False))
            study.optimize(guarded, n_trials=1, catch=(objective_lib.TrialFailed,), callbacks=callbacks)
            last = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.number >= before and t.user_attrs.get("worker") == worker
            ]
        except Exception as e:  # pylint: disable=broad-except  Only connection errors are retried.
            if not storage.is_connection_error(e):
                raise
            done["connection_errors"] += 1
            if done["connection_errors"] > 20:
                raise storage.StorageError(f"the database connection failed 20 times ({e}); stopping.") from e
            message = " ".join(str(e).split())[:300]
            log(f"storage: lost the connection: {message}; the running trial is re-queued after its grace period "
                f"and keeps its saved result; retrying in {poll_seconds:.0f} s")  # fmt: skip
            time.sleep(poll_seconds)
            continue
        done["trials"] += 1
        mine = [t for t in last if t.user_attrs.get("surplus")]
        done["surplus"] += len(mine)
        done["failed"] += sum(t.state == STATES.FAIL for t in last)
    return done


def summary(study: optuna.Study) -> str:
    """One line: trial counts by state and the best value."""
    now = {k: v for k, v in counts(study).items() if v}
    best = ""
    if now.get("COMPLETE"):
        best = f"; best {study.best_value:.4g} (trial {study.best_trial.number})"
    return ", ".join(f"{k.lower()} {v}" for k, v in now.items()) + best


def config_json(config: SearchConfig) -> str:
    return json.dumps(dataclasses.asdict(config), indent=1, sort_keys=True)
