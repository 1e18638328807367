"""Bounded waits for tests that watch something happen (a watcher's sync, a service's pick-up)."""

from __future__ import annotations

import time

import pytest


def wait_until(condition, deadline_s: float, *, poll_s: float = 0.25) -> float:
    """Seconds until ``condition()`` held, checked every ``poll_s``; fails the test after ``deadline_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"not within {deadline_s} s")
        time.sleep(poll_s)
    return time.monotonic() - started
