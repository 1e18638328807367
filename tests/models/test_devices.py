"""models/devices.py and --device on a CPU-only machine: resolution, refusals, decode threads,
and databases that do not care which device made their vectors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _extract_data import make_collection
from _waiting import patience
from click.testing import CliRunner

from similar_images import features
from similar_images.cli import main
from similar_images.errors import ModelError
from similar_images.models import devices, efficientnet

ROOT = Path(__file__).resolve().parents[2]
REAL_CUDA_AVAILABLE = devices.cuda_available  # before tests/conftest.py's stand-in replaces it in each test
needs_no_cuda = pytest.mark.skipif(REAL_CUDA_AVAILABLE(), reason="this machine has CUDA; the refusal needs none")


@pytest.fixture
def fake_cuda(monkeypatch):
    """Whether a CUDA device is seen (``devices.cuda_available``) is what the test sets."""
    answer = {"value": False}
    monkeypatch.setattr(devices, "cuda_available", lambda: answer["value"])
    return answer


def test_cuda_available_asks_torch(monkeypatch):
    import torch

    for seen in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda seen=seen: seen)
        assert REAL_CUDA_AVAILABLE() is seen


def test_auto_is_cuda_only_when_torch_sees_a_device(fake_cuda):
    assert devices.resolve_device("auto") == "cpu"
    fake_cuda["value"] = True
    assert devices.resolve_device("auto") == "cuda"
    assert devices.resolve_device("auto", runtime="openvino") == "cpu"  # OpenVINO runs on the CPU here
    assert devices.resolve_device("cpu") == "cpu"
    assert devices.resolve_device("cuda") == "cuda"


def test_cuda_without_a_device_is_a_clear_error(fake_cuda):
    with pytest.raises(ModelError) as error:
        devices.resolve_device("cuda")
    assert str(error.value) == "no CUDA device: torch.cuda.is_available() is False; use --device cpu"


def test_cuda_with_openvino_is_refused_even_with_a_device(fake_cuda):
    fake_cuda["value"] = True
    with pytest.raises(ModelError, match="does not work with the openvino runtime"):
        devices.resolve_device("cuda", runtime="openvino")
    with pytest.raises(ValueError, match="unknown device 'gpu'; choose one of: auto, cpu, cuda"):
        devices.resolve_device("gpu")


def test_decode_pool_uses_every_core_for_cuda():
    assert devices.decode_workers("cuda") == len(os.sched_getaffinity(0))
    assert devices.decode_workers("cpu") is None  # the pipeline's own default


def test_cpu_descriptions_stay_as_they_were():
    assert devices.describe_device("cpu") == {}
    assert devices.describe_device("cuda") == {"device": "cuda"}
    described = efficientnet.create(weights="none", device="cpu").describe()
    assert "device" not in described and described["runtime"] == "native"


@needs_no_cuda
def test_models_refuse_cuda_before_loading_weights(tmp_path):
    missing = tmp_path / "missing.pth"  # never read: the device is checked first
    with pytest.raises(ModelError, match="^no CUDA device"):
        efficientnet.create(weights=missing, device="cuda")
    from similar_images.models import vgg16

    with pytest.raises(ModelError, match="^no CUDA device"):
        vgg16.create(weights=str(missing), device="cuda")
    with pytest.raises(ModelError, match="openvino runtime"):
        vgg16.create(weights=str(missing), runtime="openvino", device="cuda")


@pytest.fixture
def no_model(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(features, "get_extractor", fail)


@pytest.mark.parametrize("args, message", [
    ((), "error: no CUDA device: torch.cuda.is_available() is False; use --device cpu"),
    (("--runtime", "openvino"), "error: --device cuda does not work with the openvino runtime"),
])
def test_extract_device_cuda_errors_are_one_line_and_load_no_model(tmp_path, no_model, fake_cuda, args, message):
    file_list, folder, _ = make_collection(tmp_path, bad=False)
    result = CliRunner().invoke(main, ["extract", "-l", str(file_list), "-d", str(folder), "--device", "cuda",
                                       "--model", "efficientnet-lite0", *args])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.strip().startswith(message)


def test_extract_passes_the_device_and_sizes_decoding_for_cuda(tmp_path, monkeypatch, fake_cuda):
    from _extract_data import PixelExtractor

    from similar_images import extract as extract_module

    file_list, folder, names = make_collection(tmp_path, bad=False)
    asked, run = {}, {}
    monkeypatch.setattr(features, "get_extractor", lambda model, **options: asked.update(options) or PixelExtractor())
    real_run = extract_module.run_extraction
    monkeypatch.setattr(extract_module, "run_extraction",
                        lambda *a, **k: run.update(workers=k["workers"]) or real_run(*a, **k))
    fake_cuda["value"] = True
    result = CliRunner().invoke(main, ["extract", "-l", str(file_list), "-d", str(folder), "--no-progress",
                                       "--model", "efficientnet-lite0"])
    assert result.exit_code == 0, result.output
    assert asked["device"] == "cuda" and run["workers"] == len(os.sched_getaffinity(0))


class RecordedOnCuda:
    """The CPU model, describing itself as a CUDA run does: what a GPU-built manifest holds."""

    def __init__(self, model):
        self._model = model
        self.name, self.input_size, self.dim = model.name, model.input_size, model.dim

    def embed(self, batch):
        return self._model.embed(batch)

    def describe(self):
        return {**self._model.describe(), "device": "cuda"}


@pytest.fixture(scope="module")
def made_on_cuda(tmp_path_factory):
    """``(vectors, image folder, names)`` of a database whose manifest says it was made on CUDA."""
    from similar_images.extract import run_extraction

    tmp_path = tmp_path_factory.mktemp("made_on_cuda")
    file_list, folder, names = make_collection(tmp_path, bad=False)
    vectors = tmp_path / "gpu.npy"
    run_extraction(file_list, folder, vectors, RecordedOnCuda(efficientnet.create(device="cpu")), batch_size=4,
                   show_progress=False)
    return vectors, folder, names


def test_a_database_made_on_cuda_answers_cpu_queries(made_on_cuda):
    from similar_images.search import SimilarImages

    vectors, folder, names = made_on_cuda
    db = SimilarImages.open(vectors, index=None, device="cpu")
    assert db.model["device"] == "cuda"
    (best, *_), = db.search([str(folder / names[0])], k=3)
    assert best.path == names[0] and best.score > 0.999
    assert "device" not in db.extractor.describe()  # the query model runs on the CPU


def test_search_device_cuda_without_a_device_is_refused(made_on_cuda, fake_cuda):
    vectors, folder, names = made_on_cuda
    result = CliRunner().invoke(main, ["search", "--vectors", str(vectors), "--exact", "--device", "cuda", "--id", "0"])
    assert result.exit_code == 1 and result.output.strip() == (
        "error: no CUDA device: torch.cuda.is_available() is False; use --device cpu")
    ok = CliRunner().invoke(main, ["search", "--vectors", str(vectors), "--exact", "--device", "cpu",
                                   str(folder / names[1])])
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[1].endswith(names[1])  # the image itself comes first


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["add", "new.jpg"]])
def test_serve_and_add_refuse_device_cuda_before_loading_a_model(made_on_cuda, fake_cuda, monkeypatch, command):
    from similar_images.service import server

    def fail(*args, **kwargs):
        raise AssertionError("the server started")

    monkeypatch.setattr(server, "serve", fail)
    vectors, _, _ = made_on_cuda
    before = vectors.read_bytes()
    result = CliRunner().invoke(main, [*command, "--vectors", str(vectors), "--exact", "--device", "cuda"])
    assert result.exit_code == 1 and result.output.strip() == (
        "error: no CUDA device: torch.cuda.is_available() is False; use --device cpu")
    assert vectors.read_bytes() == before


@needs_no_cuda
def test_gpu_tests_skip_with_a_reason_on_a_cpu_only_machine():
    # PYTEST_ADDOPTS left out: the caller's options (-v, --durations) would change the summary read here
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_ADDOPTS": ""}
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/models/test_gpu.py", "-q", "-rs",
                           "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=patience(600))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^\d+ skipped in ", done.stdout, re.M), done.stdout  # nothing passed, failed or errored
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all("torch.cuda.is_available() is False" in line for line in skipped), done.stdout
