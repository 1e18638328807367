"""--engine / --address options: refused before any model or Ray starts when they do not fit."""

from __future__ import annotations

import os

import pytest
from _extract_data import make_collection
from click.testing import CliRunner

from similar_images import features
from similar_images.cli import main
from similar_images.cluster.session import is_loopback


@pytest.fixture
def no_model(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(features, "get_extractor", fail)


def test_ray_options_need_engine_ray(tmp_path, no_model):
    file_list, folder, _ = make_collection(tmp_path, bad=False)
    result = CliRunner().invoke(main, ["extract", "-l", str(file_list), "-d", str(folder), "-o",
                                       str(tmp_path / "v.npy"), "--actors", "2"])
    assert result.exit_code == 2 and "need --engine ray" in result.output
    assert not (tmp_path / "v.npy").exists()


def test_build_address_needs_engine_ray(tmp_path):
    (tmp_path / "v.npy").write_bytes(b"")
    result = CliRunner().invoke(main, ["build", "-i", str(tmp_path / "v.npy"), "--address", "auto"])
    assert result.exit_code == 2 and "--address needs --engine ray" in result.output


@pytest.mark.parametrize(("address", "loopback"), [("127.0.0.1:6379", True), ("ray://localhost:10001", True),
                                                   ("[::1]:6379", True), ("10.0.0.5:6379", False), ("auto", False)])
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_a_ray_start_that_times_out_under_load_is_tried_once_more(monkeypatch):
    """Ray raises a bare Exception when its node times out during start-up (a loaded machine);
    the start runs with explicit, generous waits in the environment and is retried once."""
    from similar_images.cluster import session

    monkeypatch.delenv("RAY_worker_register_timeout_seconds", raising=False)
    seen = []

    def start():
        seen.append(dict(os.environ))
        if len(seen) == 1:
            raise Exception("The current node timed out during startup.")
        return "started"

    assert session.start_with_retry(start) == "started" and len(seen) == 2
    assert all(env["RAY_worker_register_timeout_seconds"] == "180" for env in seen)
    assert "RAY_worker_register_timeout_seconds" not in os.environ  # only while Ray starts

    def never():
        raise Exception("The current node timed out during startup.")

    with pytest.raises(Exception, match="timed out during startup"):
        session.start_with_retry(never)  # the second failure is the caller's to report
