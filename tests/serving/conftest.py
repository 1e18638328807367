"""Fixtures for the serving tests: the service tests' tiny database and helpers, and Ray.

The Ray Serve tests run the service's own API tests again over HTTP (``test_service_api``),
and start Ray as the cluster tests do (``_ray_cluster``: 127.0.0.1 only, generous start-up
waits, one retry), so both folders are importable from here.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS / "service", TESTS / "cluster"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from _index_data import tiny_flat_database  # noqa: E402


@pytest.fixture
def tiny_files(tmp_path, monkeypatch):
    """12 pattern images embedded with the tiny model and a flat index: (vectors, index, image_dir)."""
    return tiny_flat_database(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def ray_temp_root():
    """Ray's session files in a folder of this module, removed at its end (as tests/cluster does);
    Ray's proxy with the middleware ``serve --engine ray`` gives it (a dead replica's requests: 503)."""
    from similar_images.serving.proxy import proxy_environment

    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", folder)
        for key, value in proxy_environment().items():  # before local_ray starts Ray's processes
            patch.setenv(key, value)
        yield folder
    shutil.rmtree(folder, ignore_errors=True)
