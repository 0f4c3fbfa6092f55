"""Tests that only tests/test_isolation.py runs, by node id in an isolated child (not collected: not test_*.py)."""

import pytest


def test_fails():
    assert 1 == 2, "planted failure"


def test_skips():
    pytest.skip("planted skip")
