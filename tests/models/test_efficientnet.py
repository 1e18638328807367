"""EfficientNet-Lite0: offline loading, preprocessing, and proof that it is pretrained."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

from similar_images.demo import sample_photos
from similar_images.errors import ModelError
from similar_images.features import get_extractor
from similar_images.models import efficientnet

# ImageNet classes (0-based indices) that are right for scikit-image's photos
COFFEE_CLASSES = {967: "espresso", 968: "cup", 504: "coffee mug", 925: "consomme"}
CAT_CLASSES = {281: "tabby", 282: "tiger cat", 283: "Persian", 285: "Egyptian cat", 287: "lynx"}


def _no_network(*args, **kwargs):
    raise AssertionError("EfficientNet-Lite0 tried to use the network")


def _block_network(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(socket.socket, "connect", _no_network)
    mp.setattr(socket.socket, "connect_ex", _no_network)
    mp.setattr(socket, "getaddrinfo", _no_network)
    mp.setattr(socket, "create_connection", _no_network)


@pytest.fixture(scope="module")
def model():
    """The pretrained model, built with every socket connection failing."""
    with pytest.MonkeyPatch.context() as mp:
        _block_network(mp)
        return get_extractor("efficientnet-lite0")


@pytest.fixture(scope="module")
def random_model():
    return efficientnet.create(weights="none", seed=0)


def _as_input(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


def test_preprocess_is_inception_style_nchw():
    batch = np.zeros((2, 224, 224, 3), np.uint8)
    batch[0, :, :, 0] = 255
    batch[1, 5, 7, 2] = 127
    x = efficientnet.preprocess(batch)
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    assert x[0, 0].min() == x[0, 0].max() == pytest.approx(128 / 128)
    assert x[0, 1, 0, 0] == pytest.approx(-127 / 128)
    assert x[1, 2, 5, 7] == 0.0


def test_preprocess_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB batch"):
        efficientnet.preprocess(np.zeros((2, 224, 224), np.uint8))


def test_pretrained_loads_offline_and_describes_itself(model):
    assert (model.name, model.input_size, model.dim) == ("efficientnet-lite0", (224, 224), 1280)
    info = model.describe()
    assert info["name"] == "efficientnet-lite0"
    assert info["weights"] == "pretrained:efficientnet-lite0-57934424.pth"
    assert (info["dim"], info["input_size"]) == (1280, [224, 224])
    assert (info["runtime"], info["precision"]) == ("native", "fp32")
    assert efficientnet.weights_file().is_file()


def test_embed_shapes(model):
    vectors = model.embed(_batch(3))
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and (vectors >= 0).all()  # pooled ReLU6 outputs
    assert model.embed(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1280)


def test_embed_is_per_image_and_deterministic(model):
    batch = _batch(4, seed=1)
    together = model.embed(batch)
    alone = np.concatenate([model.embed(batch[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model.embed(batch), together)


def test_embed_rejects_wrong_size(model):
    with pytest.raises(ValueError, match=r"\(224, 224\)"):
        model.embed(np.zeros((1, 100, 100, 3), np.uint8))


def test_load_native_matches_embed(model):
    import torch

    batch = _batch(2, seed=2)
    module = efficientnet.load_native(weights="pretrained")
    with torch.inference_mode():
        out = module(torch.from_numpy(efficientnet.preprocess(batch))).numpy()
    assert out.shape == (2, 1280)
    np.testing.assert_allclose(out, model.embed(batch), rtol=1e-4, atol=1e-5)


def test_random_weights_are_seeded_and_recorded(random_model, model):
    import torch

    state = torch.get_rng_state()
    again = efficientnet.create(weights="none", seed=0)
    assert torch.equal(state, torch.get_rng_state()), "creating the model changed the global RNG"
    other = efficientnet.create(weights="none", seed=1)
    batch = _batch(2, seed=3)
    np.testing.assert_array_equal(random_model.embed(batch), again.embed(batch))
    assert not np.allclose(random_model.embed(batch), other.embed(batch))
    assert random_model.describe()["weights"] == "none(seed=0)"
    assert random_model.describe() != model.describe()


def test_weights_from_a_file(tmp_path, random_model):
    import torch

    path = tmp_path / "mine.pth"
    torch.save(efficientnet._load_network("none", 0).state_dict(), path)
    loaded = efficientnet.create(weights=path)
    batch = _batch(2, seed=4)
    np.testing.assert_allclose(loaded.embed(batch), random_model.embed(batch), rtol=1e-6)
    assert loaded.describe()["weights"].startswith("file:sha256=")


@pytest.mark.parametrize("content", [None, b"not a torch file"])
def test_bad_weights_file_is_a_model_error(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match="weights.pth"):
        efficientnet.create(weights=path)


def test_bad_runtime_or_precision():
    with pytest.raises(ValueError, match="native, openvino"):
        efficientnet.create(runtime="tensorrt")
    with pytest.raises(ValueError, match="needs runtime='openvino'"):
        efficientnet.create(precision="int8")


@pytest.mark.slow
def test_classifies_known_photos(model):
    coffee = _as_input(sample_photos.load_photo("coffee"))
    cat = _as_input(sample_photos.load_photo("chelsea"))
    top5 = model.classify(np.stack([coffee, cat]), k=5)  # (2, 5)
    assert set(top5[0]) & set(COFFEE_CLASSES), f"coffee top-5 {top5[0]}"
    assert top5[0][0] in COFFEE_CLASSES
    assert set(top5[1]) & set(CAT_CLASSES), f"cat top-5 {top5[1]}"
    # random weights know nothing: the same photos are not classified right
    random = efficientnet.create(weights="none")
    assert random.classify(coffee[None], k=1)[0][0] not in COFFEE_CLASSES


@pytest.mark.slow
def test_edited_copies_find_their_original_first(model):
    names = list(sample_photos.PHOTOS)
    originals = {name: sample_photos.load_photo(name) for name in names}
    library = model.embed(np.stack([_as_input(originals[n]) for n in names]))  # (p, 1280)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    probes, expected = [], []
    for name in ("coffee", "chelsea", "astronaut", "rocket", "china", "grace_hopper"):
        for edit in ("crop", "small", "jpeg"):
            probes.append(_as_input(sample_photos.EDITS[edit](originals[name])))
            expected.append(names.index(name))
    queries = model.embed(np.stack(probes))  # (q, 1280)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries @ library.T  # (q, p) cosine
    np.testing.assert_array_equal(scores.argmax(axis=1), expected)
    # and clearly: the original beats the best other photo by a margin
    best = scores[np.arange(len(expected)), expected]
    scores[np.arange(len(expected)), expected] = -1
    assert (best - scores.max(axis=1)).min() > 0.1


def test_weights_as_recorded_in_a_manifest(model):
    recorded = model.describe()["weights"]
    again = efficientnet.create(weights=recorded)
    assert again.describe() == model.describe()
    with pytest.raises(ModelError, match="install the matching"):
        efficientnet.create(weights="pretrained:efficientnet-lite0-00000000.pth")


def test_search_rebuilds_the_model_from_the_manifest(model):
    from similar_images.features import extractor_for

    assert extractor_for(model.describe()).describe() == model.describe()
