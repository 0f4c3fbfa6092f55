"""Storage URLs: where they come from, how they are shown, and a refused connection reported in one line."""

import socket

import optuna
import pytest

from goaldriven.search import storage


def test_url_comes_from_the_argument_then_the_environment_then_sqlite_in_root(monkeypatch, tmp_path):
    monkeypatch.setenv(storage.ENV_VAR, "postgresql+psycopg2://env@db/search")
    assert storage.resolve_url("sqlite:////x.db", str(tmp_path)) == "sqlite:////x.db"
    assert storage.resolve_url(None, str(tmp_path)) == "postgresql+psycopg2://env@db/search"
    monkeypatch.delenv(storage.ENV_VAR)
    assert storage.resolve_url(None, str(tmp_path)) == f"sqlite:///{tmp_path}/search.db"
    with pytest.raises(storage.StorageError, match="--storage"):
        storage.resolve_url(None, None)


def test_password_is_never_shown():
    assert storage.redact("postgresql://search:secret@db:5432/s") == "postgresql://search:***@db:5432/s"
    assert "secret" not in storage.redact("postgresql+psycopg2://u:secret@h/s")
    assert storage.redact("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def test_a_refused_connection_is_retried_then_reported_in_one_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines = []
    url = f"postgresql+psycopg2://search:pw@127.0.0.1:{port}/postgres"
    with pytest.raises(storage.StorageError) as error:
        storage.make_storage(url, heartbeat_interval=None, connect_attempts=2, retry_delay=0.01, log=lines.append)
    assert "after 2 attempts" in str(error.value) and "\n" not in str(error.value)
    assert len(lines) >= 1 and "retrying" in lines[0]
    assert "pw@" not in " ".join(lines) + str(error.value)


def test_sqlite_and_journal_stores_hold_a_study(tmp_path):
    for url in (f"sqlite:///{tmp_path}/s.db", f"journal:{tmp_path}/s.journal"):
        store = storage.make_storage(url, heartbeat_interval=1, create_tables=True)
        study = optuna.create_study(storage=store, study_name="s")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        assert len(study.trials) == 2, url
