"""models/clip.py: open_clip's transform, image and text towers, weights from a file.

Random seeded weights (no download): the vectors mean nothing, but every path they take is
the real one, and each is checked against open_clip's own functions.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _clip_data import clip_extractor
from _waiting import patience
from PIL import Image

from similar_images.errors import ModelError
from similar_images.features import get_extractor
from similar_images.images import to_model_input

pytestmark = pytest.mark.slow  # open_clip builds a 150M-parameter model


@pytest.fixture(scope="module")
def clip():
    return clip_extractor(seed=0)


def photos() -> list[Image.Image]:
    """Landscape, portrait, square, odd sizes, smaller than the input (upscaled)."""
    rng = np.random.default_rng(3)
    sizes = [(300, 200), (199, 301), (224, 224), (97, 61), (640, 427), (225, 224)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def test_fit_and_normalisation_are_open_clips_transform(clip):
    import torch

    _, _, preprocess = _open_clip_parts(clip)
    resize_and_crop = type(preprocess)(preprocess.transforms[:2])
    for image in photos():
        ours = to_model_input(image, clip.fit)  # what the decode threads make
        assert np.array_equal(ours, np.asarray(resize_and_crop(image))), image.size
        assert torch.equal(clip.preprocess(ours[None])[0], preprocess(image))  # the same values


def test_image_vectors_are_open_clips_encode_image(clip):
    import torch

    model, _, preprocess = _open_clip_parts(clip)
    images = photos()
    with torch.inference_mode():
        expected = model.encode_image(torch.stack([preprocess(im) for im in images])).numpy()
    ours = clip.embed(np.stack([to_model_input(im, clip.fit) for im in images]))
    assert ours.shape == (len(images), 512) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_text_vectors_are_open_clips_encode_text_for_the_same_tokens(clip):
    import open_clip
    import torch

    texts = ["a red bicycle", "a cat on a sofa", "  two   spaces  ", "ünïcödé and émojis 🚲"]
    tokens = open_clip.get_tokenizer("ViT-B-32-quickgelu")(texts)
    assert torch.equal(clip.tokenize(texts), tokens)
    with torch.inference_mode():
        expected = clip.model.encode_text(tokens).numpy()
    ours = clip.encode_text(texts)
    assert ours.shape == (4, 512) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    assert clip.encode_text([]).shape == (0, 512)


def test_weights_file_in_open_clips_format_gives_the_same_vectors(clip, tmp_path):
    import torch

    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(clip.model.state_dict(), path)  # what open_clip's pretrained files hold
    from_file = get_extractor("clip-vit-b-32", weights=str(path), device="cpu")
    described = from_file.describe()
    assert described["weights"].startswith("file:sha256=") and described["weights_file"] == str(path)
    batch = np.stack([to_model_input(im, clip.fit) for im in photos()[:3]])
    np.testing.assert_allclose(from_file.embed(batch), clip.embed(batch), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_file.encode_text(["a dog"]), clip.encode_text(["a dog"]), rtol=1e-5, atol=1e-6)


def test_describe_records_what_rebuilds_the_model(clip):
    from similar_images.features import extractor_for

    described = clip.describe()
    assert described["weights"] == "none(seed=0)" and described["towers"] == ["image", "text"]
    assert described["input_size"] == [224, 224] and described["dim"] == 512
    assert "bicubic" in described["preprocessing"]
    assert extractor_for(described).describe()["weights"] == "none(seed=0)"  # a query model, from the manifest


def test_unknown_weights_are_one_line(tmp_path):
    with pytest.raises(ModelError, match="neither a weights file nor an open_clip tag") as caught:
        get_extractor("clip-vit-b-32", weights=str(tmp_path / "missing.bin"))
    assert "\n" not in str(caught.value) and "openai" in str(caught.value)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot load CLIP") as caught:
        get_extractor("clip-vit-b-32", weights=str(garbage))
    assert "\n" not in str(caught.value)
    for bad in ({"runtime": "tensorflow"}, {"precision": "int8"}, {"batch_size": 8}):  # int8: openvino only
        with pytest.raises(ValueError, match="runtime 'native' \\(fp32\\) or 'openvino'"):
            get_extractor("clip-vit-b-32", weights="none", **bad)


def test_torchvision_and_sentence_transformers_import_beside_a_cpu_torch():
    code = ("from similar_images.models.torch_compat import ensure_torchvision_importable as e\n"
            "e(); e()\n"
            "from torchvision.transforms import CenterCrop\n"
            "from sentence_transformers import SentenceTransformer\n"
            "import open_clip\n"
            "print('imported')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=patience(600))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "imported"


def _open_clip_parts(clip):
    """open_clip's own (model, tokenizer, validation transform) behind ``clip``."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg("ViT-B-32-quickgelu", "openai")
    preprocess = open_clip.image_transform(224, is_train=False, mean=cfg["mean"], std=cfg["std"],
                                           interpolation=cfg["interpolation"], resize_mode=cfg["resize_mode"])
    return clip.model, open_clip.get_tokenizer("ViT-B-32-quickgelu"), preprocess
