"""Where a model runs: ``--device cpu|cuda|auto``.

``auto`` (the default) is ``cuda`` when torch sees a CUDA device and the runtime can use
it, else ``cpu``. The features do not depend on the device (same model, fp32, cosine
>= 0.999 between devices), so a database built on a GPU answers queries run on a CPU
and the other way round: ``describe()`` records ``device`` (only when it is ``cuda``)
for the record, and :data:`~similar_images.features.MODEL_IDENTITY_KEYS` does not
compare it.
"""

from __future__ import annotations

import contextlib
import os

from similar_images.errors import ModelError

DEVICES = ("auto", "cpu", "cuda")
NO_CUDA = "no CUDA device: torch.cuda.is_available() is False; use --device cpu"
# Runtimes that can run on a CUDA device (OpenVINO runs on the CPU here).
CUDA_RUNTIMES = ("native",)


def cuda_available() -> bool:
    """Whether torch is installed with CUDA and sees a device (False when torch is missing)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str = "auto", *, runtime: str = "native") -> str:
    """The device a model with ``runtime`` runs on: ``"cpu"`` or ``"cuda"``.

    Args:
        device: ``"auto"`` (cuda when present and the runtime can use it), ``"cpu"`` or ``"cuda"``.
        runtime: the model's runtime (``"native"`` or ``"openvino"``).

    Raises:
        ValueError: an unknown device.
        ModelError: ``"cuda"`` without a CUDA device, or with a runtime that runs on the CPU only.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    if device == "cuda" and runtime not in CUDA_RUNTIMES:
        raise ModelError(f"--device cuda does not work with the {runtime} runtime (it runs on the CPU here); "
                         "use --device cpu or auto, or the native runtime")
    if runtime not in CUDA_RUNTIMES:
        return "cpu"
    if cuda_available():
        return "cuda"
    if device == "cuda":
        raise ModelError(NO_CUDA)
    return "cpu"


def decode_workers(device: str) -> int | None:
    """Decode threads for a model on ``device``: every core for ``"cuda"`` (a GPU
    embeds faster than a few cores decode), ``None`` (the pipeline's default) for the CPU,
    where decoding shares the cores with the model."""
    if device != "cuda":
        return None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def describe_device(device: str) -> dict[str, str]:
    """What ``describe()`` adds for ``device``: ``{"device": "cuda"}``, nothing for the CPU, so
    CPU descriptions (and the databases and checkpoints that hold them) stay as they were."""
    return {"device": device} if device != "cpu" else {}


def strict_fp32(device: str):
    """A context where cuDNN computes convolutions in fp32, not TF32 (its default on
    recent GPUs), so a CUDA model's vectors match the CPU's as ``precision: fp32`` says;
    nothing on the CPU."""
    if device == "cpu":
        return contextlib.nullcontext()
    import torch

    return torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
