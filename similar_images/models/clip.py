"""CLIP through open_clip: an image tower behind the extractor interface, and a text tower
in the same space, so words find pictures.

``clip-vit-b-32`` is OpenAI's CLIP ViT-B/32 as open_clip reproduces it (architecture
``ViT-B-32-quickgelu``: OpenAI trained with QuickGELU). Weights, by ``weights=``:

* an open_clip pretrained tag (``"openai"`` by default; also ``"laion400m_e32"``,
  ``"metaclip_400m"``, ...): fetched by open_clip itself on first use from the Hugging Face
  hub into its cache (``HF_HOME``), as Keras fetches VGG16's;
* a path to a checkpoint file in open_clip's format (a ``state_dict`` saved with
  ``torch.save``, or ``.safetensors``), loaded by open_clip (``pretrained=PATH``): offline
  machines (docs/clip.md names the files to place);
* ``"none"``: random weights from ``seed``, for tests.

Preprocessing is open_clip's own validation transform for the tag (whichever weights are
loaded): read from the ``Compose`` that ``create_model_and_transforms`` returns, its resize
and centre crop run in the decode threads as a :class:`~similar_images.images.Fit` (the same
arithmetic on the PIL image), its ``ToTensor`` and ``Normalize`` here on the batch (the same
operations): :func:`check_transform` refuses a transform of another shape.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from similar_images.errors import ModelError
from similar_images.images import Fit
from similar_images.models.devices import describe_device, resolve_device, strict_fp32
from similar_images.models.efficientnet import _set_threads
from similar_images.models.torch_compat import ensure_torchvision_importable

log = logging.getLogger(__name__)

# our model name -> (open_clip architecture, default pretrained tag)
VARIANTS = {"clip-vit-b-32": ("ViT-B-32-quickgelu", "openai")}
TAG_PREFIX = "open_clip:"


def open_clip_module():
    """``import open_clip``, with torchvision made importable beside a CPU torch first."""
    ensure_torchvision_importable()
    try:
        import open_clip
    except ImportError:
        raise ModelError("CLIP models need open_clip: pip install open-clip-torch==3.3.0 torchvision==0.28.0") from None
    return open_clip


def check_transform(preprocess) -> tuple[Fit, tuple[float, ...], tuple[float, ...]]:
    """open_clip's validation transform as (the decode's :class:`Fit`, mean, std).

    Raises:
        ModelError: not ``Resize(int) -> CenterCrop -> convert -> ToTensor -> Normalize``.
    """
    from torchvision import transforms as T

    steps = list(getattr(preprocess, "transforms", []))
    kinds = [type(step).__name__ for step in steps]
    if (len(steps) != 5 or not isinstance(steps[0], T.Resize) or not isinstance(steps[1], T.CenterCrop)
            or not isinstance(steps[4], T.Normalize) or not isinstance(steps[0].size, int)):
        raise ModelError(f"unexpected open_clip transform {kinds}; expected Resize(shorter side), CenterCrop, "
                         "convert, ToTensor, Normalize")
    modes = {T.InterpolationMode.BICUBIC: 3, T.InterpolationMode.BILINEAR: 2}  # PIL's numbers
    if steps[0].interpolation not in modes:
        raise ModelError(f"unexpected open_clip interpolation {steps[0].interpolation}")
    crop = tuple(int(s) for s in steps[1].size)  # (h, w)
    fit = Fit(crop, steps[0].size, modes[steps[0].interpolation])
    return fit, tuple(float(m) for m in steps[4].mean), tuple(float(s) for s in steps[4].std)


def _weights_arg(weights: str, arch: str, open_clip) -> tuple[str | None, str]:
    """``weights`` as open_clip's ``pretrained`` (None: random) and the id ``describe()`` records."""
    if weights.startswith(TAG_PREFIX):
        weights = weights[len(TAG_PREFIX):]
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if weights in tags:
        return weights, f"{TAG_PREFIX}{weights}"
    if weights.startswith("none"):
        return None, weights
    if os.path.isfile(weights):
        from similar_images.fileio.files import sha256_file

        return os.path.abspath(weights), f"file:sha256={sha256_file(weights)[:16]}"
    raise ModelError(f"{weights}: neither a weights file nor an open_clip tag of {arch} "
                     f"({', '.join(tags)}); offline, give the checkpoint file (docs/clip.md)")


@functools.lru_cache(maxsize=2)
def _load(arch: str, tag: str, pretrained: str | None, seed: int):
    """(model in eval mode, validation transform, tokenizer), once per process and weights."""
    open_clip = open_clip_module()
    import torch

    cfg = open_clip.get_pretrained_cfg(arch, tag)  # the tag's transform, even for other weights
    options = dict(image_mean=cfg.get("mean"), image_std=cfg.get("std"),
                   image_interpolation=cfg.get("interpolation"), image_resize_mode=cfg.get("resize_mode"))
    try:
        with torch.random.fork_rng(devices=[]):  # random weights: the same in every process
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, **options)
    except Exception as exc:  # download, file and key errors come in many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = "" if pretrained is None or os.path.isfile(pretrained) else (
            "; offline, give the checkpoint file with --weights PATH (docs/clip.md)")
        raise ModelError(f"cannot load CLIP {arch} weights {pretrained or 'none'}: {first}{hint}") from None
    return model.eval(), preprocess, open_clip.get_tokenizer(arch)


class CLIPExtractor:
    """CLIP's image tower as a feature extractor (``(n, h, w, 3)`` uint8 -> ``(n, dim)``) and its
    text tower (:meth:`encode_text`); raw vectors, normalised by the index as for every model.

    Build it with :func:`create` (or ``features.get_extractor("clip-vit-b-32")``).
    """

    def __init__(self, name: str, arch: str, model, preprocess, tokenizer, weights_id: str, *,
                 weights_file: str | None = None, device: str = "cpu"):
        import torch

        self.name, self.arch, self.device, self.transform = name, arch, device, preprocess
        self.fit, mean, std = check_transform(preprocess)
        self.input_size = self.fit.size
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(device)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(device)
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.dim = int(model.text_projection.shape[1])
        self._weights_id, self._weights_file = weights_id, weights_file

    def preprocess(self, batch: np.ndarray):
        """open_clip's ToTensor and Normalize on a fitted batch: ``(n, h, w, 3)`` uint8 ->
        ``(n, 3, h, w)`` float32 tensor on the model's device (the same operations, so the same values)."""
        import torch

        batch = np.asarray(batch)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (*self.input_size, 3):
            raise ValueError(f"expected a (n, {self.input_size[0]}, {self.input_size[1]}, 3) RGB batch, "
                             f"got shape {batch.shape}")
        x = torch.from_numpy(np.array(batch, dtype=np.uint8, order="C")).to(self.device)  # (n, h, w, 3), a writable copy
        x = x.permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)  # ToTensor
        return x.sub(self._mean).div(self._std)  # Normalize

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 RGB, fitted by :attr:`fit` -> ``(n, dim)`` float32 image vectors."""
        import torch

        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode(), strict_fp32(self.device):
            out = self.model.encode_image(self.preprocess(batch))
        return out.float().cpu().numpy()

    def tokenize(self, texts: Sequence[str]):
        """open_clip's tokenizer: ``(n, context_length)`` int64 token ids."""
        return self.tokenizer([str(t) for t in texts])

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``(n, dim)`` float32 vectors in the image vectors' space (open_clip's
        ``encode_text`` of :meth:`tokenize`'s tokens)."""
        import torch

        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode(), strict_fp32(self.device):
            out = self.model.encode_text(self.tokenize(texts).to(self.device))
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        described = {**describe_base(self.name, self.arch, self._weights_id, self.dim, self.fit),
                     "runtime": "native", "precision": "fp32", **describe_device(self.device)}
        if self._weights_file:  # where a query finds the file again (the sha256 checks it is the same)
            described["weights_file"] = self._weights_file
        return described


def describe_base(name: str, arch: str, weights_id: str, dim: int, fit: Fit) -> dict[str, Any]:
    """The runtime-independent part of ``describe()``."""
    import open_clip

    return {
        "name": name,
        "weights": weights_id,
        "dim": dim,
        "input_size": list(fit.size),
        "architecture": f"open_clip {arch}",
        "towers": ["image", "text"],
        "preprocessing": (f"open_clip {open_clip.__version__}: shorter side to {fit.short_side} "
                          f"({'bicubic' if fit.resample == 3 else 'bilinear'}), centre crop "
                          f"{fit.size[0]}x{fit.size[1]}, /255, mean/std"),
    }


def numpy_preprocess(mean, std):
    """open_clip's ToTensor and Normalize in numpy: ``(n, h, w, 3)`` uint8 -> ``(n, 3, h, w)`` float32
    (what OpenVINO's conversion and INT8 calibration feed the image tower)."""
    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)

    def preprocess(batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32).transpose(0, 3, 1, 2) / np.float32(255)  # (n, 3, h, w)
        return np.ascontiguousarray((x - mean) / std)

    return preprocess


def traced_image_tower(native: CLIPExtractor):
    """The image tower as TorchScript, for OpenVINO. Traced here with ``check_trace=False``:
    open_clip's ViT traces to the same operators twice, but torch's trace check compares the
    graphs' mangled module names and fails, and OpenVINO's own tracing runs that check."""
    import warnings

    import torch

    example = torch.zeros((1, 3, *native.input_size), dtype=torch.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates jit.trace; OpenVINO reads it
        return torch.jit.trace(native.model.visual, example, check_trace=False)


def _openvino(native: CLIPExtractor, precision: str, runtime_options: dict) -> Any:
    """The image tower on OpenVINO (fp32, or INT8 behind the fidelity guard), open_clip's
    normalisation in its graph (uint8 input); the text tower stays ``native``'s (torch)."""
    from similar_images.models.openvino_input import InputSteps
    from similar_images.models.openvino_runtime import create_openvino_extractor

    fit, mean, std = check_transform(native.transform)
    steps = InputSteps(layout="NCHW", mean=tuple(255 * m for m in mean), scale=tuple(255 * s for s in std))
    extractor = create_openvino_extractor(
        name=native.name, native=functools.partial(traced_image_tower, native),  # traced only if not cached
        preprocess=numpy_preprocess(mean, std), input_size=fit.size,
        dim=native.dim, describe_base=describe_base(native.name, native.arch, native._weights_id, native.dim, fit),
        input_steps=steps, precision=precision, fit=fit, **runtime_options)
    extractor.encode_text, extractor.tokenize = native.encode_text, native.tokenize
    if native._weights_file:  # as the native extractor records it: where queries find the file
        extractor._description["weights_file"] = native._weights_file
    return extractor


def create(name: str = "clip-vit-b-32", weights: str | os.PathLike | None = None, runtime: str = "native",
           precision: str = "fp32", seed: int = 0, device: str = "auto", **runtime_options: Any) -> CLIPExtractor:
    """Build a CLIP extractor (image and text towers).

    Args:
        name: one of :data:`VARIANTS`.
        weights: an open_clip pretrained tag (default: the variant's, fetched by open_clip
            on first use), a checkpoint file in open_clip's format, or ``"none"`` (random,
            from ``seed``: tests).
        runtime: ``"native"`` (PyTorch) or ``"openvino"`` (the image tower; the text tower
            stays in torch).
        precision: ``"fp32"``; ``"int8"`` with ``runtime="openvino"`` (calibrated on the
            collection's images and checked against fp32, as for the other models).
        seed: seed for ``weights="none"``.
        device: ``"auto"`` (cuda when present), ``"cpu"`` or ``"cuda"``.

    Raises:
        ValueError: unknown variant, runtime or precision.
        ModelError: the weights cannot be found or loaded; open_clip is not installed.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown CLIP model {name!r}; choose one of: {', '.join(VARIANTS)}")
    if runtime not in ("native", "openvino") or (runtime == "native" and (precision != "fp32" or runtime_options)):
        raise ValueError(f"{name}: runtime 'native' (fp32) or 'openvino' (fp32, int8), not {runtime} {precision}"
                         + (f" with {', '.join(sorted(runtime_options))}" if runtime_options else ""))
    device = resolve_device(device, runtime=runtime)
    arch, tag = VARIANTS[name]
    open_clip = open_clip_module()
    weights = str(weights) if weights is not None else tag
    pretrained, weights_id = _weights_arg(weights, arch, open_clip)
    if weights_id == "none":
        weights_id = f"none(seed={seed})"
    elif weights_id.startswith("none(seed="):  # as describe() records it
        seed = int(weights_id[len("none(seed="):-1])
    if device == "cpu":
        _set_threads()
    log.info("loading %s (open_clip %s, %s) on %s", name, arch, weights_id, device)
    model, preprocess, tokenizer = _load(arch, tag, pretrained, seed)
    is_file = weights_id.startswith("file:")
    native = CLIPExtractor(name, arch, model, preprocess, tokenizer, weights_id,
                           weights_file=pretrained if is_file else None, device=device)
    return native if runtime == "native" else _openvino(native, precision, runtime_options)


def clip_vit_b_32(weights: str | os.PathLike | None = None, runtime: str = "native", precision: str = "fp32",
                  seed: int = 0, device: str = "auto", **runtime_options: Any) -> CLIPExtractor:
    """``clip-vit-b-32``: :func:`create` with OpenAI's CLIP ViT-B/32."""
    return create("clip-vit-b-32", weights, runtime=runtime, precision=precision, seed=seed, device=device,
                  **runtime_options)
