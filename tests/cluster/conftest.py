"""Ray's session files go into a folder of this test run, removed at its end: `make test`
leaves no /tmp/ray behind (Ray reads RAY_TMPDIR for the root of its temporary files)."""

from __future__ import annotations

import shutil
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def ray_temp_root():
    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_TMPDIR", folder)
    yield folder
    patch.undo()
    shutil.rmtree(folder, ignore_errors=True)
