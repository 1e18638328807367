"""INT8 across CPUs: which integer arithmetic this CPU runs, and the re-check of a model made on another.

An INT8 convolution multiplies 8-bit activations by 8-bit weights and adds the products.
CPUs with VNNI (AVX-512 VNNI, AVX-VNNI) or AMX add them into 32 bits; older ones (AVX2,
AVX-512 without VNNI) use ``vpmaddubsw``, which adds pairs of products into 16 bits and
saturates. The same quantised model therefore gives other vectors on an AVX2 CPU than on
the VNNI CPU it was calibrated on, unless its weights leave room for the pairs (NNCF's
overflow fix). Measured on EfficientNet-Lite0 (``benchmarks/README.md``, "INT8 on other
CPUs"): a model quantised without the fix runs at cosine min 0.55-0.70 to fp32 on AVX2.

So a quantised model records :func:`cpu_isa` of the CPU it was calibrated on (``isa`` in
its ``report.json`` and in the database's ``describe()["calibration"]``) and keeps its
held-out images with their fp32 and INT8 vectors (``reference.npz``, about 90 KB an
image). Loaded on a CPU of another ISA, :func:`recheck` runs the model on those images
(a fraction of a second to a few seconds) and applies the same fidelity guard: accepted,
or refused in one line naming both ISAs. No original image files are needed.

oneDNN's ``ONEDNN_MAX_CPU_ISA`` caps the ISA OpenVINO's convolutions use (measured:
``jit_avx2_I8`` kernels become ``jit_sse42_I8`` with ``SSE41``); :func:`cpu_isa` applies the
same cap, so a test can run a model under an older ISA than the one it was made on.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.errors import ModelError
from similar_images.models.int8_fidelity import int8_vs_fp32_report

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference.npz"  # held-out images (uint8) with their fp32 and INT8 vectors
# Levels in oneDNN's order, each with the /proc/cpuinfo flag that says the CPU has it.
LEVELS = (("sse41", "sse4_1"), ("avx", "avx"), ("avx2", "avx2"), ("avx_vnni", "avx_vnni"),
          ("avx512", "avx512bw"), ("avx512_vnni", "avx512_vnni"), ("amx", "amx_int8"))
EXACT_INT8 = frozenset({"avx_vnni", "avx512_vnni", "amx"})  # int8 dot products into 32 bits, no saturation
# ONEDNN_MAX_CPU_ISA values -> the highest level they allow.
_CAPS = {"SSE41": "sse41", "AVX": "avx", "AVX2": "avx2", "AVX2_VNNI": "avx_vnni", "AVX2_VNNI_2": "avx_vnni",
         "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512_vnni", "AVX512_CORE_BF16": "avx512_vnni",
         "AVX512_CORE_FP16": "avx512_vnni", "AVX10_1_512": "avx512_vnni"}


def cpu_isa(flags: set[str] | None = None, cap: str | None = None) -> str:
    """The highest INT8 arithmetic level OpenVINO uses on this CPU: ``"amx"``, ``"avx512_vnni"``,
    ``"avx512"``, ``"avx_vnni"``, ``"avx2"``, ``"avx"``, ``"sse41"`` (x86), else the machine name.

    Args:
        flags: the CPU's flags (default: ``/proc/cpuinfo``'s).
        cap: oneDNN's ``ONEDNN_MAX_CPU_ISA`` (default: the environment's; AMX names and ``ALL``
            allow every level).
    """
    flags = _cpu_flags() if flags is None else flags
    if cap is None:
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    names = [name for name, _ in LEVELS]
    limit = names.index(_CAPS.get(cap.strip().upper(), "amx"))
    have = [name for name, flag in LEVELS[: limit + 1] if flag in flags]
    return have[-1] if have else (platform.machine().lower() or "unknown")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):  # x86, ARM
                    return set(value.split())
    except OSError:
        pass
    return set()


def exact_int8(isa: str) -> bool:
    """True where INT8 dot products do not saturate (VNNI, AMX), so no overflow fix is needed."""
    return isa in EXACT_INT8


def save_reference(folder: Path, images: np.ndarray, fp32: np.ndarray, int8: np.ndarray) -> None:
    """Write ``reference.npz``: ``(n, h, w, 3)`` uint8 images and their ``(n, dim)`` vectors."""
    np.savez_compressed(folder / REFERENCE_FILE, images=images, fp32=np.asarray(fp32, np.float32),
                        int8=np.asarray(int8, np.float32))


def recheck(name: str, folder: Path, report: dict[str, Any], embed: Callable[[np.ndarray], np.ndarray], *,
            min_agreement: float, force: bool, settings: dict[str, Any] | None = None,
            isa: str | None = None) -> dict[str, Any] | None:
    """Re-run the fidelity guard when this CPU's ISA is not the one ``report`` was measured on.

    Args:
        folder: the model's folder (``report.json``, ``reference.npz``).
        report: its saved fidelity report (``isa``: where it was calibrated).
        embed: ``(n, h, w, 3)`` uint8 -> ``(n, dim)`` INT8 vectors on this CPU.
        settings: its NNCF settings (a model without a recorded ISA is judged by them).
        isa: this CPU's (default :func:`cpu_isa`).

    Returns:
        ``None`` when no re-check was due (same ISA, or a model from before ISAs were
        recorded), else the report on this CPU (with ``isa``, ``calibrated_on``,
        ``cosine_to_calibration_min``: this CPU's INT8 vectors against the calibration CPU's).

    Raises:
        ModelError: agreement below ``min_agreement`` here (unless ``force``), or no
            reference images to re-check with.
    """
    made_on, here = report.get("isa"), isa or cpu_isa()
    if made_on == here:
        return None
    if made_on is None:
        _legacy_warning(name, settings or {}, here)
        return None
    where = f"{name} INT8 calibrated on {made_on}, running on {here}"
    try:
        with np.load(folder / REFERENCE_FILE) as data:
            images, fp32, there = data["images"], data["fp32"], data["int8"]
    except (OSError, KeyError, ValueError) as exc:
        return _refuse(f"INT8 refused for {name}: {where}, and its reference images cannot be read "
                       f"({folder / REFERENCE_FILE}: {exc}); quantise again on this CPU or use --precision fp32",
                       force)
    ours = np.asarray(embed(images), np.float32).reshape(len(images), -1)  # (n, dim)
    checked = int8_vs_fp32_report(fp32, ours)
    drift = int8_vs_fp32_report(there, ours)["cosine_min"]
    checked.update(isa=here, calibrated_on=made_on, cosine_to_calibration_min=drift)
    line = (f"{where}: re-checked on its {checked['images']} held-out images: top-10 agreement with fp32 "
            f"{checked['top10_agreement']:.3f} ({report.get('top10_agreement', float('nan')):.3f} on {made_on}), "
            f"cosine to fp32 min {checked['cosine_min']:.4f}, to {made_on}'s INT8 vectors min {drift:.4f}")
    if checked["top10_agreement"] >= min_agreement:
        log.info("%s: accepted", line)
        return checked
    return _refuse(f"INT8 refused for {line}, below {min_agreement:.2f}; quantise again on this CPU "
                   "(extract --precision int8) or use --precision fp32", force) or checked


def _refuse(message: str, force: bool) -> None:
    if not force:
        raise ModelError(message)
    log.warning("%s (used anyway: forced)", message)


def _legacy_warning(name: str, settings: dict[str, Any], here: str) -> None:
    """A model saved before ISAs were recorded: its settings tell whether it assumed VNNI."""
    if settings.get("overflow_fix") == "disable" and not exact_int8(here):
        log.warning("%s INT8 was quantised for a CPU with VNNI (no overflow fix) and records no reference "
                    "images; this CPU (%s) has no VNNI, so its vectors may drift: quantise again here", name, here)
