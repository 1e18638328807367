"""OpenVINO runtime for every feature model: the same network, converted in process.

A model module (``vgg16.py``, ``efficientnet.py``) hands over its native network (a
Keras model on preprocessed NHWC input, or a torch module on preprocessed NCHW input)
and its ``preprocess`` function; :func:`create_openvino_extractor` converts the network
with ``openvino.convert_model``, optionally quantises it to INT8 (see
:mod:`similar_images.models.quantize`), compiles it for the CPU and returns a
:class:`~similar_images.features.FeatureExtractor`.

Choices, measured on a 2-core AVX-512 VNNI machine (``benchmarks/README.md``):

* ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AVX-512 BF16 OpenVINO silently runs
  "fp32" models in bfloat16, which moved EfficientNet-Lite0 features to cosine 0.996
  of PyTorch's; with f32 they match to 0.99999.
* Hint ``THROUGHPUT`` (streams of one thread each) for extraction unless ``hint="LATENCY"``
  (one request on all cores): A/B runs end to end found no gain from LATENCY, and one hint
  halves the tuning. Queries (``embed`` of fewer images than the streams hold) run on a
  LATENCY compile: 1.5-2x faster there. The batch size is the fastest of
  :data:`BATCH_CANDIDATES`, timed by interleaved medians (``speeds.tuned_setting``).
* Compiles go through OpenVINO's compile cache (``CACHE_DIR``, ``<cache>/openvino-compiled``),
  so each model and hint is compiled once per machine.
* At least two requests even with LATENCY, so the pipeline keeps one queued while the
  other runs (:class:`~similar_images.models.openvino_requests.RequestStream`).
* The compiled model takes uint8 RGB: the preprocessing runs in its graph
  (:mod:`similar_images.models.openvino_input`), not in numpy on the cores the model needs.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from similar_images.models.int8_cache import converted_model
from similar_images.models.openvino_convert import convert, convert_native
from similar_images.models.openvino_input import InputSteps, uint8_batch, with_uint8_input
from similar_images.models.openvino_requests import (
    COMPILE_CONFIG,
    RequestStream,
    compile_model,
    requests_for,
    run_requests,
    time_setting,
)

__all__ = ["COMPILE_CONFIG", "OpenVINOExtractor", "compile_model", "convert", "create_openvino_extractor", "run_requests",
           "time_setting"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
BATCH_CANDIDATES = (4, 8, 16)  # 1 and 2 were the slowest in every tuning record (2026-12-02)
HINTS = ("LATENCY", "THROUGHPUT")
TUNED_HINTS = ("THROUGHPUT",)  # the hints the tuning tries when none is given (see the module docstring)
TIMING_S = 0.5  # seconds per timing; each setting is timed several times (see speeds.tuned_setting)


class OpenVINOExtractor:
    """Feature extractor running a compiled OpenVINO model.

    Build it with the model modules' ``create(runtime="openvino", ...)``.

    Attributes:
        fidelity: for INT8, the fidelity report against fp32 (:func:`~similar_images.quantize.fidelity_report`).
        calibrated: True when this process ran the INT8 calibration (False when the
            quantised model came from the cache).
        batch_size: images per inference request.
        hint: OpenVINO's performance hint it was compiled with (``LATENCY``: one request
            on all cores; ``THROUGHPUT``: several requests in parallel streams).
        model: the ``openvino.Model`` (fp32 or INT8, float input) that is cached and saved.
        served_model: ``model`` with the preprocessing in its graph (uint8 input).
        compiled: ``served_model`` compiled with ``hint``.
        startup_s: seconds of each start-up stage in this process (``convert_s``; INT8
            calibration: ``decode_s``, ``quantize_s``, ``holdout_fp32_s``, ``holdout_int8_s``;
            INT8 from the cache: ``load_int8_s``; ``tuning_s`` when timed; ``compile_s``).
        preprocess: uint8 NHWC batch -> ``model``'s float32 input (in numpy; the compiled
            model does the same in its graph).
    """

    def __init__(
        self,
        *,
        name: str,
        input_size: tuple[int, int],
        dim: int,
        model,
        served_model,
        compiled,
        compile_for: Callable[[str], Any],
        preprocess: Callable[[np.ndarray], np.ndarray],
        batch_size: int,
        hint: str,
        description: dict[str, Any],
        fidelity: dict[str, Any] | None = None,
        calibrated: bool = False,
        model_folder=None,
        startup_s: dict[str, float] | None = None,
    ):
        self.name = name
        self.input_size = tuple(input_size)
        self.dim = dim
        self.batch_size = batch_size
        self.hint = hint
        self.fidelity = fidelity
        self.calibrated = calibrated
        self.model_folder = model_folder  # INT8: the folder holding the quantised model; None for fp32
        self.startup_s = dict(startup_s or {})  # seconds per start-up stage in this process
        self.model, self.served_model, self.preprocess = model, served_model, preprocess
        self._compile_for, self._description = compile_for, description
        self._compiled, self._request_list = compiled, None  # compiled None: made on the first stream

    @property
    def compiled(self):
        if self._compiled is None:  # a query extractor (lazy_compile): its queries never need it
            self._compiled = self._compile_for(self.hint)
        return self._compiled

    @property
    def _requests(self) -> list:
        if self._request_list is None:
            self._request_list = requests_for(self.compiled)
        return self._request_list

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 RGB, checked, as the compiled model's input (thread-safe).

        The normalisation itself runs in the compiled graph.
        """
        return uint8_batch(batch, self.input_size)

    def compile_for(self, hint: str):
        """``served_model`` compiled with ``hint`` (once, in the extractor's compile cache)."""
        return self._compile_for(hint)

    @property
    def images_in_flight(self) -> int:
        """Images the tuned requests hold at once: ``embed`` of fewer runs on the LATENCY compile."""
        return len(self._requests) * self.batch_size

    def stream(self) -> RequestStream:
        """A :class:`~similar_images.models.openvino_requests.RequestStream` on this model's
        requests: ``submit(prepare(batch))`` ... ``collect()``, oldest first, requests kept in
        flight across batches. One stream at a time (it owns the requests)."""
        return RequestStream(self._requests, self.batch_size)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 RGB -> ``(n, dim)`` float32 raw features. One thread at a time.

        Fewer images than the tuned requests hold (:attr:`images_in_flight`: a query, a
        service's few) run as one request on all cores (the LATENCY compile, made on first
        use): the THROUGHPUT streams would leave cores idle, and a VGG16 INT8 query took 38 ms
        on them against 26 ms (benchmarks/README.md, "Search indexes").
        """
        prepared = self.prepare(batch)
        if len(prepared) == 0:
            return np.zeros((0, self.dim), np.float32)
        if len(prepared) < 2 * self.batch_size or len(prepared) < self.images_in_flight:  # 2: requests_for's least
            out = self.compile_for("LATENCY")(prepared)[0]
            return np.asarray(out, dtype=np.float32).reshape(len(prepared), self.dim)
        stream = self.stream()
        stream.submit(prepared)
        return stream.collect().reshape(len(prepared), self.dim)

    def describe(self) -> dict[str, Any]:
        return dict(self._description)


def create_openvino_extractor(
    *,
    name: str,
    native,
    preprocess: Callable[[np.ndarray], np.ndarray],
    input_size: tuple[int, int],
    dim: int,
    describe_base: dict[str, Any],
    input_steps: InputSteps,
    precision: str = "fp32",
    batch_size: int | None = None,
    hint: str | None = None,
    calibration_paths=None,
    calibration: dict[str, Any] | None = None,
    calibration_size: int | None = None,
    holdout_size: int | None = None,
    min_agreement: float = 0.9,
    force_int8: bool = False,
    cache_dir=None,
    model_folder=None,
    show_progress: bool = True,
    lazy_compile: bool = False,
    fit=None,  # images.Fit
) -> OpenVINOExtractor:
    """Convert ``native`` to OpenVINO (fp32, or INT8 after calibration) and wrap it.

    Args:
        name: the model's name (``"vgg16"``).
        native: the Keras model or torch module mapping ``preprocess`` output to
            ``(n, dim)`` features, or a function returning it (called only when the
            converted model is not in the cache).
        preprocess: ``(n, h, w, 3)`` uint8 RGB -> the network's float32 input.
        input_steps: the same preprocessing as graph steps, compiled into the model.
        input_size: ``(height, width)``.
        dim: feature length.
        describe_base: the runtime-independent part of ``describe()`` (name, weights,
            dim, input_size, ...).
        precision: ``"fp32"`` or ``"int8"``.
        batch_size: images per request; ``None`` times the candidates (with
            :data:`TUNED_HINTS`, or with ``hint``) once on this machine and remembers the fastest.
        hint: OpenVINO performance hint, one of :data:`HINTS`; ``None``: THROUGHPUT.
        calibration_paths: INT8 only: image files of the collection being indexed; a
            deterministic sample of them calibrates the model and checks it.
        calibration: INT8 only: the ``calibration`` entry of a database's
            ``describe()``; the quantised model is then loaded from the cache (and,
            with ``calibration_paths``, the sample must be the same).
        calibration_size: INT8 calibration images (at most); ``None``: the model's measured
            default (:data:`similar_images.models.quantize.CALIBRATION_SIZES`).
        holdout_size: INT8 held-out images for the fidelity report (at most); ``None``:
            the model's :data:`similar_images.models.quantize.HOLDOUT_SIZES`.
        min_agreement: INT8 is refused when the top-10 neighbour agreement with fp32
            on the held-out images is below this.
        force_int8: use INT8 even below ``min_agreement``.
        cache_dir: where quantised models and timings live (default
            ``$SIMILAR_IMAGES_CACHE`` or ``~/.cache/similar-images``).
        model_folder: INT8 only: a database's own copy of its quantised model, used
            before the cache (a database that travels needs no cache).
        show_progress: progress bars (the INT8 fidelity report is printed to stderr always).
        lazy_compile: compile the ``hint`` model on its first batch stream, not now: a
            query extractor's few images run on the LATENCY compile only (CLI searches).
        fit: a CLIP model's :class:`~similar_images.images.Fit` (resize and crop, not a plain
            resize): used for the INT8 calibration images and kept as the extractor's ``fit``.

    Raises:
        ValueError: unknown precision, or INT8 options that do not fit together.
        ModelError: conversion failed, INT8 was refused, or a cached INT8 model named
            by ``calibration`` is missing.
    """
    from similar_images.models import quantize, speeds

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    h, w = input_size
    description = {**describe_base, "runtime": "openvino", "precision": precision}
    # functools.cache: converted (or loaded from the cache) at most once, and only when needed
    fp32_model = functools.cache(lambda: converted_model(
        name, describe_base, lambda: convert_native(native, preprocess, input_size), cache_dir=cache_dir))
    fidelity, calibrated, stages = None, False, {}
    if precision == "int8":
        int8 = quantize.int8_model(
            name=name,
            fp32_model=fp32_model,
            preprocess=preprocess,
            input_size=fit or (h, w),
            describe_base=describe_base,
            calibration_paths=calibration_paths,
            calibration=calibration,
            calibration_size=calibration_size,
            holdout_size=holdout_size or quantize.HOLDOUT_SIZES.get(name, quantize.HOLDOUT_SIZE),
            min_agreement=min_agreement,
            force=force_int8,
            cache_dir=cache_dir,
            model_folder=model_folder,
            show_progress=show_progress,
        )
        model, fidelity, calibrated, stages = int8.model, int8.report, int8.calibrated, dict(int8.stages)
        model_folder = int8.folder
        description["calibration"] = int8.identity
    else:
        if calibration_paths is not None or calibration is not None:
            raise ValueError("calibration images are only used with precision='int8'")
        t0 = time.perf_counter()
        model, model_folder = fp32_model(), None
        stages["convert_s"] = round(time.perf_counter() - t0, 2)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if hint is not None and hint not in HINTS:
        raise ValueError(f"unknown hint {hint!r}; choose one of: {', '.join(HINTS)}")
    compiled_by_hint: dict[str, Any] = {}
    served = with_uint8_input(model, input_steps)
    compile_s = [0.0]

    def compiled_for(h: str):
        if h not in compiled_by_hint:
            t0 = time.perf_counter()
            compiled_by_hint[h] = compile_model(served, cache_dir=cache_dir, PERFORMANCE_HINT=h)
            compile_s[0] += time.perf_counter() - t0
        return compiled_by_hint[h]

    if batch_size is None:
        t0 = time.perf_counter()
        hint, batch_size = speeds.tuned_setting(
            description,
            lambda h, b, first: time_setting(compiled_for(h), _as_given, input_size, b,
                                             min_seconds=TIMING_S, warm_up=first),
            [hint] if hint else TUNED_HINTS,
            BATCH_CANDIDATES,
            cache_dir=cache_dir,
        )
        stages["tuning_s"] = round(time.perf_counter() - t0 - compile_s[0], 2)
    hint = hint or "THROUGHPUT"
    compiled = None if lazy_compile else compiled_for(hint)
    stages["compile_s"] = round(compile_s[0], 2)
    log.info("%s on OpenVINO %s, %s hint, batch size %d; start-up %s", name, precision, hint, batch_size,
             ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in stages.items()))
    if (calibrated or precision == "fp32") and not lazy_compile:  # a query's start-up is not an extraction's
        from similar_images.models.int8_costs import record_startup

        record_startup(name, precision, stages, cache_dir=cache_dir)
    extractor = OpenVINOExtractor(
        name=name, input_size=(h, w), dim=dim, model=model, served_model=served, compiled=compiled,
        compile_for=compiled_for, preprocess=preprocess, batch_size=batch_size, hint=hint, description=description,
        fidelity=fidelity, calibrated=calibrated, model_folder=model_folder, startup_s=stages,
    )
    extractor.fit = fit  # images.fit_of: None is a plain resize; a Fit, the model's crop
    return extractor

def _as_given(batch: np.ndarray) -> np.ndarray:
    return batch  # uint8: the compiled model preprocesses in its graph
