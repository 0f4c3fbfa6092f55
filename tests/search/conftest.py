"""A PostgreSQL server for the search tests: $GOALDRIVEN_TEST_POSTGRES_URL (CI's .ci/run starts one), or a throw-away
cluster started here (initdb + pg_ctl on 127.0.0.1, a free port, a temporary folder; as the `postgres` user when
running as root, since initdb refuses root). The tests skip only when no server can be started, and fail instead
when GOALDRIVEN_REQUIRE_POSTGRES=1 (CI must run them).
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest

URL_VAR = "GOALDRIVEN_TEST_POSTGRES_URL"
REQUIRE_VAR = "GOALDRIVEN_REQUIRE_POSTGRES"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(folder: str) -> tuple[str, list[str]]:
    """Starts a cluster in `folder`; returns (URL, the stop command). Raises RuntimeError naming what failed."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("initdb/pg_ctl not found (install postgresql-15)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            subprocess.run(["id", "postgres"], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise RuntimeError("running as root and there is no 'postgres' user to run initdb as") from e
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), _free_port()
    run = lambda args: subprocess.run(as_user + args, check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    try:
        run([initdb, "-D", data, "-U", "search", "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        run([pg_ctl, "-D", data, "-o", options, "-l", os.path.join(folder, "server.log"), "-w", "start"])
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{' '.join(e.cmd[-3:])} failed: {(e.stderr or e.stdout).strip()[-300:]}") from e
    stop = as_user + [pg_ctl, "-D", data, "-m", "immediate", "stop"]
    return f"postgresql+psycopg2://search@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a running PostgreSQL server (see the module docstring)."""
    pytest.importorskip("optuna", reason="optuna is not installed (pip install optuna==5.1.0)")
    if os.environ.get(URL_VAR):
        yield os.environ[URL_VAR]
        return
    folder = tempfile.mkdtemp(prefix="goaldriven_pg_")
    os.chmod(folder, 0o755)
    try:
        url, stop = _start_cluster(folder)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get(REQUIRE_VAR) == "1":
            pytest.fail(f"PostgreSQL is required ({REQUIRE_VAR}=1) but could not be started: {e}")
        pytest.skip(f"PostgreSQL could not be started: {e}")
    try:
        yield url
    finally:
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def study_name():
    """A study name no other test uses (all tests share one server)."""
    return f"test_{uuid.uuid4().hex[:10]}"
