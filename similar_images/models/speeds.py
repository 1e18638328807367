"""Measured speeds of the feature models on this machine, and the hint built from them.

The first time an OpenVINO extractor picks its batch size and performance hint it times
the candidates (several times each, medians); the result (images/s, hint, batch size,
spread) is remembered in ``<cache>/speeds.json`` under this
machine's CPU, so later runs skip the timing and ``extract`` can tell the user which
runtime/precision is fastest here. ``benchmarks/runtimes.py`` records every model x
runtime x precision, the native ones included.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import platform
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from similar_images.fileio.files import read_json, write_json_atomic

log = logging.getLogger(__name__)

SPEEDS_FILE = "speeds.json"
LONG_RUN_IMAGES = 2000  # below this, extraction takes minutes whatever the runtime
TIE = 0.03  # tuning: settings this close to the fastest median count as tied (see _smallest_tied)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$SIMILAR_IMAGES_CACHE``, else ``~/.cache/similar-images``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("SIMILAR_IMAGES_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "similar-images"


def machine() -> dict[str, Any]:
    """What identifies this machine's speed: CPU model, usable cores, relevant ISA flags."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8") if f in flags]
    return {"cpu": cpu, "cores": cores, "isa": isa}


def _machine_key(info: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]


def config_key(name: str, runtime: str, precision: str) -> str:
    return f"{name}/{runtime}/{precision}"


def _load(cache_dir) -> dict[str, Any]:
    path = cache_root(cache_dir) / SPEEDS_FILE
    if not path.exists():
        return {}
    try:
        data = read_json(path)
    except Exception as exc:  # a damaged cache file only costs a re-measurement
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def measured(cache_dir=None, *, section: str = "models") -> dict[str, dict[str, Any]]:
    """This machine's records: config key (``name/runtime/precision``) -> record.

    ``section``: ``"models"`` (speeds, for the hint) or ``"tuning"`` (the hint and batch
    size each OpenVINO setting chose).
    """
    entry = _load(cache_dir).get(_machine_key(machine()), {})
    return dict(entry.get(section, {}))


def record_speed(
    name: str,
    runtime: str,
    precision: str,
    images_per_s: float,
    *,
    batch_size: int | None = None,
    hint: str | None = None,
    by_setting: dict[str, float] | None = None,
    source: str = "measured",
    section: str = "models",
    cache_dir=None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Remember a model-only speed measured on this machine (atomic write).

    A batch-tuning result (``source="batch tuning"``) does not replace a speed recorded
    by the benchmark, which measures under steadier conditions. ``extra`` adds entries
    (tuning: the spread, the re-timed figure and every timing).
    """
    info = machine()
    data = _load(cache_dir)
    entry = data.setdefault(_machine_key(info), {"machine": info, "models": {}})
    records = entry.setdefault(section, {})
    key = config_key(name, runtime, precision)
    if source == "batch tuning" and section == "models" and records.get(key, {}).get("source") not in (
        None, "batch tuning"
    ):
        return
    records[key] = {
        "images_per_s": round(float(images_per_s), 2),
        "batch_size": batch_size,
        "hint": hint,
        "by_setting": {k: round(r, 2) for k, r in (by_setting or {}).items()},
        "source": source,
        **(extra or {}),
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(cache_root(cache_dir) / SPEEDS_FILE, data)


def forget_tuning(name: str, runtime: str, precision: str, *, cache_dir=None) -> bool:
    """Drop this machine's tuning record of one model (the next extractor times again); True if one was there."""
    data = _load(cache_dir)
    records = data.get(_machine_key(machine()), {}).get("tuning", {})
    if records.pop(config_key(name, runtime, precision), None) is None:
        return False
    write_json_atomic(cache_root(cache_dir) / SPEEDS_FILE, data)
    return True


def tuned_setting(
    description: dict[str, Any],
    timer: Callable[[str, int, bool], float],
    hints: Iterable[str],
    batch_sizes: Iterable[int],
    *,
    cache_dir=None,
    rounds: int = 2,
    max_rounds: int = 5,
) -> tuple[str, int]:
    """The fastest (hint, batch size) for ``description`` on this machine, timed and remembered.

    Every setting is timed ``rounds`` times, interleaved (round after round over all the
    settings, in alternating order, so a change in machine load hits them alike), and
    compared by its median. While the leader's spread ((max - min) / median of its
    timings) is larger than its lead over the second best, the settings within that
    spread of the leader are timed again, up to ``max_rounds`` timings each. Of the settings
    within :data:`TIE` of the fastest median the smallest batch wins (:func:`_smallest_tied`);
    it is re-timed once more, and its median, spread and every timing are recorded.

    Args:
        description: the extractor's ``describe()`` (name, runtime, precision used).
        timer: ``timer(hint, batch_size, first)`` -> images/s; ``first`` is True on a
            setting's first timing (warm it up).
        hints: performance hints to try.
        batch_sizes: batch sizes to try with each hint.
        rounds: timings of every setting before choosing.
        max_rounds: at most this many timings of a setting before the re-timing.
    """
    hints, batch_sizes = list(hints), list(batch_sizes)
    key = config_key(description["name"], description["runtime"], description["precision"])
    known = measured(cache_dir, section="tuning").get(key)
    if known and known.get("hint") in hints and known.get("batch_size"):
        return known["hint"], int(known["batch_size"])
    settings = [(h, b) for h in hints for b in batch_sizes]
    samples: dict[tuple[str, int], list[float]] = {s: [] for s in settings}

    def time_once(setting: tuple[str, int]) -> None:
        rate = timer(setting[0], setting[1], not samples[setting])
        samples[setting].append(rate)
        log.info("%s: %s hint, batch %d -> %.1f images/s", key, *setting, rate)

    for r in range(rounds):
        for setting in settings if r % 2 == 0 else reversed(settings):
            time_once(setting)
    while True:
        ranked = sorted(settings, key=lambda s: _median(samples[s]), reverse=True)
        best = ranked[0]
        lead = _gap(samples, ranked)
        spread = _spread(samples[best])
        if spread <= lead or len(samples[best]) >= max_rounds:
            break
        floor = _median(samples[best]) * (1 - spread)
        for setting in [s for s in ranked if _median(samples[s]) >= floor]:
            time_once(setting)
    best = _smallest_tied(samples, ranked)
    retimed = timer(best[0], best[1], False)
    samples[best].append(retimed)
    log.info("%s: chose %s hint, batch %d: %.1f images/s (re-timed %.1f, spread %.0f%%, lead %.0f%%)",
             key, *best, _median(samples[best]), retimed, 100 * _spread(samples[best]), 100 * lead)
    extra = {"spread": round(_spread(samples[best]), 3), "lead": round(lead, 3),
             "retimed_images_per_s": round(retimed, 2),
             "timings": {f"{h}/{b}": [round(x, 2) for x in v] for (h, b), v in samples.items()}}
    for section in ("tuning", "models"):
        record_speed(
            description["name"], description["runtime"], description["precision"], _median(samples[best]),
            batch_size=best[1], hint=best[0],
            by_setting={f"{h}/{b}": _median(v) for (h, b), v in samples.items()},
            source="batch tuning", section=section, cache_dir=cache_dir, extra=extra,
        )
    return best


def _smallest_tied(samples: dict, ranked: list) -> tuple[str, int]:
    """Of the settings within :data:`TIE` of the fastest median, the smallest batch (then the faster).

    Why: timed alone, the batch sizes from 4 to 16 tie (within 2-5%), but in an extraction
    the model shares the cores with decoding, and smaller requests share them better
    (EfficientNet-Lite0 INT8 end to end, 4,000 photos, 2 cores: 408-438 images/s with
    requests of 4, 357-396 of 8, 348-366 of 16, for model-only figures within noise).
    """
    fastest = _median(samples[ranked[0]])
    tied = [s for s in ranked if _median(samples[s]) >= (1 - TIE) * fastest]
    return min(tied, key=lambda s: (s[1], -_median(samples[s])))


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _spread(values: list[float]) -> float:
    """(max - min) / median: how far apart one setting's timings were."""
    return (max(values) - min(values)) / _median(values) if len(values) > 1 and _median(values) > 0 else 0.0


def _gap(samples: dict, ranked: list) -> float:
    """The leader's lead over the second best, as a fraction of the leader's median."""
    if len(ranked) < 2 or _median(samples[ranked[0]]) <= 0:
        return float("inf")
    first, second = _median(samples[ranked[0]]), _median(samples[ranked[1]])
    return (first - second) / first


def runtime_hint(
    model: str,
    runtime: str,
    precision: str,
    n_images: int,
    *,
    cache_dir=None,
) -> str | None:
    """Text naming faster runtime/precision options for a long run, with their speed here.

    Returns ``None`` for short runs (fewer than :data:`LONG_RUN_IMAGES` images) and
    when nothing measured on this machine is faster than the chosen setting.
    """
    if n_images < LONG_RUN_IMAGES:
        return None
    records = measured(cache_dir)
    mine = records.get(config_key(model, runtime, precision), {}).get("images_per_s")
    faster = []
    for key, rec in records.items():
        name, rt, prec = key.split("/")
        rate = rec.get("images_per_s") or 0.0
        if (rt, prec) != (runtime, precision) and (mine is None or rate > 1.1 * mine):
            faster.append((rate, name, rt, prec))
    if not faster:
        if mine is None and runtime == "native":
            return (
                f"{n_images:,} images to extract with {model} ({runtime}, {precision}). Faster: "
                "--runtime openvino (and --precision int8, checked against fp32) was about 4x "
                "TensorFlow for VGG16 on a 2-core AVX-512 VNNI CPU; "
                "`python benchmarks/runtimes.py` measures every option on this machine."
            )
        return None
    lines = [f"{n_images:,} images to extract with {model} ({runtime}, {precision}"
             + (f", {mine:.1f} images/s here)." if mine else ").")
             + " Faster options measured on this machine (model only):"]
    for rate, name, rt, prec in sorted(faster, reverse=True)[:4]:
        minutes = n_images / rate / 60
        ratio = f", {rate / mine:.1f}x" if mine else ""
        lines.append(
            f"  --model {name} --runtime {rt} --precision {prec}: {rate:.1f} images/s{ratio}, "
            f"about {minutes:.0f} min"
        )
    return "\n".join(lines)
