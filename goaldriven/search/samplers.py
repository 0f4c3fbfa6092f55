"""The search's sampler: Optuna's Tree-structured Parzen Estimator (TPE), seeded, multivariate, with a constant liar.

The thesis used HyperOpt's TPE (Bergstra et al. 2011/2013; spec ch2 7.6, ch5 7.2). Optuna's TPE differs by default
(docs/search.md has the full comparison):
  * multivariate: one joint Parzen estimator over all parameters (HyperOpt: one per parameter, independent);
  * gamma (how many trials count as "good"): min(ceil(0.1 n), 25) (HyperOpt: min(ceil(0.25 sqrt(n)), 25));
  * n_startup_trials 10 random trials first (HyperOpt: 20); prior weight, endpoints and EI candidates agree;
  * constant liar: trials still running count as bad, so parallel workers do not all sample the same region
    (HyperOpt's parallel MongoTrials sample from completed trials only).
`hyperopt_compatible=True` sets HyperOpt 0.1.2's values of n_startup_trials, gamma, prior weight and endpoints (what
Optuna's deprecated `TPESampler.hyperopt_parameters()` returns, without its deprecated `consider_prior`); the
estimator stays multivariate unless `multivariate=False`, and the constant liar stays on for parallel workers.
Optuna 4.9 deprecated prior_weight, consider_endpoints, consider_magic_clip and gamma (to be removed in 6.0), and
hyperopt_parameters() itself: they work in the pinned 5.1 and are set here with the deprecation warnings silenced.
"""

import math
import os
import socket
import warnings
import zlib

import optuna

HYPEROPT_STARTUP_TRIALS = 20  # hyperopt 0.1.2 tpe.suggest n_startup_jobs
HYPEROPT_EI_CANDIDATES = 24


def hyperopt_gamma(n: int) -> int:
    """HyperOpt 0.1.2's number of "good" trials among n: ceil(0.25 sqrt(n)), at most 25."""
    return min(math.ceil(0.25 * n**0.5), 25)


def worker_seed(seed: int | None, worker: str | None = None) -> int | None:
    """A seed per worker derived from the study's seed and the worker's name (host:pid by default).

    Workers sharing one seed would draw the same random start-up trials; deriving theirs from their names keeps each
    worker reproducible given its name while the workers explore different points. None stays None (unseeded).
    """
    if seed is None:
        return None
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    return (int(seed) * 1_000_003 + zlib.crc32(worker.encode())) % (2**32)


def make_sampler(
    *,
    seed: int | None = 0,
    multivariate: bool = True,
    constant_liar: bool = True,
    hyperopt_compatible: bool = False,
    n_startup_trials: int | None = None,
) -> optuna.samplers.TPESampler:
    """The TPE sampler of a search.

    seed: the sampler's seed (pass `worker_seed(...)` in a worker); None: unseeded.
    multivariate: one joint density over all parameters (Optuna) instead of one per parameter (HyperOpt).
    constant_liar: running trials count as bad results while they run (parallel workers).
    hyperopt_compatible: HyperOpt 0.1.2's defaults (20 random start-up trials, gamma 0.25 sqrt(n); prior weight 1,
      no endpoint widening and 24 EI candidates, which Optuna 5.1 shares) in place of Optuna's.
    n_startup_trials: random trials before TPE starts (default: 10, or 20 with hyperopt_compatible).
    """
    kwargs = dict(seed=seed, multivariate=multivariate, constant_liar=constant_liar)
    if hyperopt_compatible:
        kwargs.update(
            prior_weight=1.0,
            consider_magic_clip=True,
            consider_endpoints=False,
            n_startup_trials=HYPEROPT_STARTUP_TRIALS,
            n_ei_candidates=HYPEROPT_EI_CANDIDATES,
            gamma=hyperopt_gamma,
        )
    if n_startup_trials is not None:
        kwargs["n_startup_trials"] = int(n_startup_trials)
    with warnings.catch_warnings():
        # Optuna 4.9 deprecated these knobs (removal planned for 6.0; setup.py pins optuna 5.1): they still work.
        warnings.simplefilter("ignore", FutureWarning)
        return optuna.samplers.TPESampler(**kwargs)
