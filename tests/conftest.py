"""Shared fixtures. Test data (images, vectors) is generated here, never committed."""

from __future__ import annotations

import os

import pytest

# Keep TensorFlow quiet and deterministic in tests; set before any test imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Ray starts its worker processes at nice 15 (Ray's ``worker_niceness``): beside 8 busy processes
# at nice 0 (issue 26's load) each got about 1% of a CPU, and one Ray test took 10 minutes
# (2026-12-03). The suite's Ray workers run at nice 0 like the suite itself, so a loaded machine
# slows them as much as the rest of the suite, no more. Every Ray a test starts inherits this.
os.environ.setdefault("RAY_worker_niceness", "0")


@pytest.fixture(scope="session", autouse=True)
def private_model_cache(tmp_path_factory):
    """Quantised models and speed records go to a per-run folder, never the user's
    ~/.cache/similar-images (tests that check the cache set their own folder)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMILAR_IMAGES_CACHE", str(tmp_path_factory.mktemp("model-cache")))
        yield


GPU_SKIP_REASON = ("no CUDA device: torch.cuda.is_available() is False (a CPU-only machine); "
                   "the gpu tests run where torch sees one")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped with a reason where torch sees none")
    from _waiting import time_scale

    time_scale()  # a bad SIMILAR_IMAGES_TEST_TIME_SCALE stops the run here, in one line


def pytest_collection_modifyitems(config, items):
    """Skip the ``gpu`` tests, with the reason, where torch sees no CUDA device."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    from similar_images.models.devices import cuda_available

    if cuda_available():
        return
    for item in gpu_tests:
        item.add_marker(pytest.mark.skip(reason=GPU_SKIP_REASON))


@pytest.fixture(autouse=True)
def cpu_unless_marked_gpu(request, monkeypatch):
    """Every test but the ``gpu`` ones runs as on CPU-only CI, even on a GPU machine: the
    package sees no CUDA device (``--device auto`` is ``cpu``), nor do the subprocesses a
    test starts. (torch itself, initialised at collection, still sees the GPU.)"""
    if request.node.get_closest_marker("gpu"):
        return
    from similar_images.models import devices

    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
