"""Where a search keeps its study: PostgreSQL for many hosts, SQLite or a journal file for one machine.

The thesis ran its TPE searches as HyperOpt trials in MongoDB with about 100 TPUs sampling at once (spec ch2 7.6,
ch5 7.2). Here the store is an Optuna storage given by URL, from the caller or the environment variable
GOALDRIVEN_SEARCH_STORAGE:

  postgresql+psycopg2://user:password@host:5432/db   many hosts (one worker per TPU host); heartbeats and retries
  sqlite:////abs/path/search.db                      one machine, a few workers; heartbeats and retries
  journal:/abs/path/search.journal                   one machine or NFS, Optuna's JournalFileBackend; no heartbeat,
                                                     so a killed worker's trial stays RUNNING (not retried)

Fault tolerance (RDB stores): every running trial writes a heartbeat each `heartbeat_interval` seconds; a trial whose
heartbeat is older than `grace_period` is marked FAIL by the next worker that starts a trial (or polls, see
`worker.py`), and `RetryHeartbeatStaleTrialCallback` re-queues it as a WAITING trial with the same parameters (the
deprecated `RetryFailedTrialCallback` is not used). Each process holds one small connection pool (`pool_size` 1,
overflow 1, pre-ping), so 100 workers need about 200 server connections at most, not 100 engines' default 15 each.
"""

import os
import time
import warnings
from typing import Callable, TypeVar

import optuna

ENV_VAR = "GOALDRIVEN_SEARCH_STORAGE"
DEFAULT_FILE = "search.db"
JOURNAL_PREFIX = "journal:"
HEARTBEAT_INTERVAL = 60  # seconds; a TPU trial lasts hours, so a minute's heartbeat costs nothing
MAX_RETRY = 2  # re-runs of a trial whose worker died (preemption), after which it stays FAIL
T = TypeVar("T")


class StorageError(RuntimeError):
    """The storage cannot be used (bad URL, unreachable server after retries); the message says what to fix."""


def resolve_url(url: str | None, root: str | None = None) -> str:
    """The storage URL: `url`, else $GOALDRIVEN_SEARCH_STORAGE, else SQLite in `root` (one machine).

    Raises StorageError when none is given and there is no root to hold the default file.
    """
    url = url or os.environ.get(ENV_VAR)
    if url:
        return url
    if root is None:
        raise StorageError(
            f"no storage: pass --storage (e.g. postgresql+psycopg2://user@host/db for many hosts) or set ${ENV_VAR}."
        )
    return f"sqlite:///{os.path.abspath(os.path.join(root, DEFAULT_FILE))}"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def is_shared(url: str) -> bool:
    """Whether the store is a database server many hosts can share (not a local file)."""
    return not (url.startswith("sqlite") or url.startswith(JOURNAL_PREFIX))


def make_storage(
    url: str,
    *,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
    grace_period: int | None = None,
    max_retry: int | None = MAX_RETRY,
    create_tables: bool = False,
    connect_attempts: int = 6,
    retry_delay: float = 2.0,
    log: Callable[[str], None] = print,
) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url` with heartbeats and the retry of stale trials (RDB stores).

    heartbeat_interval: seconds between a running trial's heartbeats (None: no heartbeat, no retries).
    grace_period: seconds without a heartbeat after which a trial is stale (None: Optuna's default, 2 intervals).
    max_retry: re-runs of a stale trial (`RetryHeartbeatStaleTrialCallback`).
    create_tables: whether this process may create the schema; only `goaldriven-search create` does (many workers
      creating it at once race, optuna#1092), workers skip table creation.
    connect_attempts, retry_delay: connection attempts and the first wait between them (doubling, `with_retries`).
    """
    if url.startswith(JOURNAL_PREFIX):
        path = url[len(JOURNAL_PREFIX) :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise StorageError(f"journal storage needs a file: {JOURNAL_PREFIX}/abs/path/search.journal")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(path)
        return optuna.storages.JournalStorage(backend)
    if "://" not in url:
        raise StorageError(
            f"storage {url!r} is not a URL; use postgresql+psycopg2://user@host/db, sqlite:////abs/path.db or "
            f"{JOURNAL_PREFIX}/abs/path.journal."
        )
    engine_kwargs = {"pool_pre_ping": True}  # a connection the server dropped is replaced before it is used
    if is_shared(url):
        engine_kwargs.update(pool_size=1, max_overflow=1, pool_recycle=1800)
    else:
        engine_kwargs["connect_args"] = {"timeout": 60}  # several local workers: wait for SQLite's lock

    def make() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental (2.8)
            callback = None
            if heartbeat_interval:
                callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval or None,
                grace_period=grace_period if heartbeat_interval else None,
                heartbeat_stale_trial_callback=callback,
                skip_table_creation=not create_tables,
            )

    try:
        return with_retries(
            make, what=f"connect to {redact(url)}", attempts=connect_attempts, first_delay=retry_delay, log=log
        )
    except ImportError as e:
        raise StorageError(f"the storage driver is missing ({e}); pip install psycopg2-binary for PostgreSQL.") from e


def is_connection_error(error: BaseException) -> bool:
    """Whether `error` (or what it was raised from) is a lost or refused database connection."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        module = type(error).__module__
        name = type(error).__name__
        if name in ("OperationalError", "InterfaceError", "DisconnectionError") and (
            module.startswith("sqlalchemy") or module.startswith("psycopg")
        ):
            return True
        if isinstance(error, optuna.exceptions.StorageInternalError):
            return True
        error = error.__cause__ or error.__context__
    return False


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int = 6,
    first_delay: float = 2.0,
    log: Callable[[str], None] = print,
) -> T:
    """`call()`, retried with exponential back-off while the database connection is lost or refused.

    Each retry logs one line naming the operation, the error and the wait; after `attempts` failures a StorageError
    says the server is unreachable. Errors that are not connection errors are raised at once.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as e:  # pylint: disable=broad-except  Filtered by is_connection_error below.
            if not is_connection_error(e):
                raise
            message = " ".join(str(e).split())[:300]
            if attempt == attempts:
                raise StorageError(
                    f"cannot {what} after {attempts} attempts ({message}); check the database server and the URL."
                ) from e
            log(f"storage: lost the connection ({what}): {message}; retrying in {delay:.0f} s ({attempt}/{attempts})")
            time.sleep(delay)
            delay = min(delay * 2, 60.0)
    raise AssertionError("unreachable")
