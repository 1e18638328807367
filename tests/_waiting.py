"""Bounded waits for tests that watch something happen (a watcher's sync, a service's pick-up),
and the patience of the test harness itself.

Two kinds of limits live in the tests, and only one of them may stretch on a slow machine:

* a product's promise (a fetch ends within its deadline + 2 s, a copied photo is found within
  10 s, a replica holds a write after its staleness bound): the test asserts exactly what the
  docs promise, and measures the product's own time, not the test's start-up;
* the harness's patience (a server, Jupyter, Ray or Chromium starting; an HTTP client's
  timeout; a page element appearing): generous by default, since a loaded machine (a load
  average of 10 on 2 cores, issue 26) must make the suite slower, not red. :func:`patience`
  scales these by ``SIMILAR_IMAGES_TEST_TIME_SCALE`` (default 1) for a machine slower still.
"""

from __future__ import annotations

import os
import time

import pytest


def time_scale() -> float:
    """``SIMILAR_IMAGES_TEST_TIME_SCALE`` as a factor (1 when unset); anything but a number >= 1 is refused."""
    text = os.environ.get("SIMILAR_IMAGES_TEST_TIME_SCALE", "1")
    try:
        scale = float(text)
    except ValueError:
        scale = 0.0
    if not scale >= 1:  # also NaN
        raise pytest.UsageError(f"SIMILAR_IMAGES_TEST_TIME_SCALE: give a number >= 1 (got {text!r})")
    return scale


def patience(seconds: float) -> float:
    """A harness wait of ``seconds`` on this machine: never a product's promise."""
    return seconds * time_scale()


def wait_until(condition, deadline_s: float, *, poll_s: float = 0.25) -> float:
    """Seconds until ``condition()`` held, checked every ``poll_s``; fails the test after ``deadline_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"not within {deadline_s} s")
        time.sleep(poll_s)
    return time.monotonic() - started
