"""--device cuda for both models and `extract --device cuda` end to end (marked ``gpu``:
skipped with a reason where torch sees no CUDA device, see tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _extract_data import make_collection
from click.testing import CliRunner

from similar_images.cli import main
from similar_images.db.vectors import load_vectors_manifest, open_vectors
from similar_images.models import efficientnet, vgg16

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def photos():
    """Six real photos (skimage) and a noise image at 224x224: (7, 224, 224, 3) uint8."""
    import skimage.data
    from PIL import Image

    from similar_images.images import load_for_model

    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
    images = [load_for_model(Image.fromarray(getattr(skimage.data, n)()), (224, 224)) for n in names]
    images.append(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8))
    return np.stack(images)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_efficientnet_on_cuda_gives_the_cpu_features(photos):
    cpu = efficientnet.create(device="cpu")
    gpu = efficientnet.create(device="cuda")
    assert gpu.device == "cuda" and gpu.describe() == {**cpu.describe(), "device": "cuda"}
    assert cosines(gpu.embed(photos), cpu.embed(photos)).min() >= 0.999
    assert np.array_equal(gpu.classify(photos[:4], k=1), cpu.classify(photos[:4], k=1))
    assert gpu.embed(photos[:0]).shape == (0, 1280)


def test_vgg16_on_cuda_gives_the_keras_cpu_features(photos):
    cpu = vgg16.create(weights="none", device="cpu")
    gpu = vgg16.create(weights="none", device="cuda")
    assert gpu.describe() == {**cpu.describe(), "device": "cuda", "framework": "torch"}
    many = np.concatenate([photos] * 10)  # 70 images: more than one forward of MAX_BATCH
    out = gpu.embed(many)
    assert out.shape == (70, 4096) and out.dtype == np.float32
    assert cosines(out[: len(photos)], cpu.embed(photos)).min() >= 0.999
    assert np.allclose(out[: len(photos)], out[-len(photos):], rtol=1e-4, atol=1e-5)


def test_extract_device_cuda_end_to_end(tmp_path):
    file_list, folder, names = make_collection(tmp_path, bad=False)
    outputs = {}
    for device in ("cuda", "cpu"):
        outputs[device] = tmp_path / f"{device}.npy"
        result = CliRunner().invoke(main, ["extract", "-l", str(file_list), "-d", str(folder), "-o",
                                           str(outputs[device]), "--model", "efficientnet-lite0", "--device", device,
                                           "--no-progress"])
        assert result.exit_code == 0, result.output
    manifest = load_vectors_manifest(outputs["cuda"], with_names=True)
    assert manifest["names"] == names and manifest["model"]["device"] == "cuda"
    gpu, cpu = np.asarray(open_vectors(outputs["cuda"])), np.asarray(open_vectors(outputs["cpu"]))
    assert cosines(gpu, cpu).min() >= 0.999
    # the database made on the GPU answers a query run on the CPU, and the other way round
    for device, vectors in (("cpu", outputs["cuda"]), ("cuda", outputs["cpu"])):
        found = CliRunner().invoke(main, ["search", "--vectors", str(vectors), "--exact", "--device", device, "-k", "1",
                                          str(Path(folder) / names[0])])
        assert found.exit_code == 0 and found.output.splitlines()[1].endswith(names[0]), found.output
