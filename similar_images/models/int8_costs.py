"""What INT8's start-up costs on this machine, and when it is not worth paying.

An INT8 extractor for a new collection pays a start-up (conversion, NNCF calibration,
the held-out fidelity check, compile) that fp32 does not; it is paid back only when the
collection is large enough for INT8's faster rate to win it back. Every start-up that
calibrated (and every OpenVINO fp32 start-up) records its seconds per stage in
``<cache>/startup.json`` under this machine's CPU, beside the model rates that
:mod:`similar_images.models.speeds` keeps in ``speeds.json``; :func:`int8_advice` puts
the two together for ``extract``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from typing import Any

from similar_images.fileio.files import read_json, write_json_atomic
from similar_images.models.speeds import cache_root, config_key, machine, measured

log = logging.getLogger(__name__)

STARTUP_FILE = "startup.json"
PER_MACHINE_STAGES = ("tuning_s",)  # timed once per machine, not per collection


def _machine_key() -> str:
    return hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:16]


def _load(cache_dir) -> dict[str, Any]:
    path = cache_root(cache_dir) / STARTUP_FILE
    try:
        data = read_json(path) if path.exists() else {}
    except Exception as exc:  # a damaged file only costs the advice
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def record_startup(name: str, precision: str, stages: dict[str, float], *, cache_dir=None) -> None:
    """Remember an OpenVINO start-up of ``name`` measured now: ``stages`` in seconds (atomic write).

    ``seconds`` is what a new collection pays: every stage but those paid once per machine.
    """
    data = _load(cache_dir)
    entry = data.setdefault(_machine_key(), {"machine": machine(), "startup": {}})
    entry.setdefault("startup", {})[config_key(name, "openvino", precision)] = {
        "seconds": round(sum(v for k, v in stages.items() if k not in PER_MACHINE_STAGES), 1),
        "stages": stages,
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    try:
        write_json_atomic(cache_root(cache_dir) / STARTUP_FILE, data)
    except OSError as exc:  # a read-only cache only loses the advice
        log.warning("cannot record the start-up in %s: %s", cache_root(cache_dir), exc)


def startups(cache_dir=None) -> dict[str, dict[str, Any]]:
    """This machine's recorded start-ups: ``name/openvino/precision`` -> ``{"seconds", "stages", ...}``."""
    return dict(_load(cache_dir).get(_machine_key(), {}).get("startup", {}))


def int8_advice(model: str, n_images: int, *, cache_dir=None) -> str | None:
    """Text for a collection too small for INT8 to pay back its start-up here; ``None`` otherwise.

    Uses the INT8 start-up recorded on this machine (a new calibration) and the model-only
    rates of ``speeds.json``: INT8 takes ``start-up + n / rate``, each fp32 option its own
    recorded start-up (0 when none is recorded, as for the native runtime) ``+ n / rate``.
    Nothing is said without both INT8 figures, or when INT8 is the fastest in all.
    """
    int8_key = config_key(model, "openvino", "int8")
    rates, starts = measured(cache_dir), startups(cache_dir)
    start8, rate8 = starts.get(int8_key, {}).get("seconds"), rates.get(int8_key, {}).get("images_per_s")
    if not start8 or not rate8:
        return None
    options = []
    for key, record in rates.items():
        name, runtime, precision = key.split("/")
        rate = record.get("images_per_s") or 0.0
        if name == model and precision == "fp32" and rate > 0:
            start = float(starts.get(key, {}).get("seconds") or 0.0)
            options.append((start + n_images / rate, runtime, start, rate))
    if not options:
        return None
    total32, runtime, start32, rate32 = min(options)
    total8 = start8 + n_images / rate8
    if total8 <= total32:
        return None
    paid_back = ""
    if rate8 > rate32:
        even = (start8 - start32) / (1 / rate32 - 1 / rate8)
        paid_back = f" is not paid back below ~{even:,.0f} images here"
    return (f"{n_images:,} images: INT8 start-up ~{start8:.0f} s (a new calibration){paid_back}; "
            f"--runtime {runtime} --precision fp32 would take ~{total32:.0f} s in all "
            f"(INT8 ~{total8:.0f} s; measured on this machine, model only: INT8 {rate8:.1f} images/s, "
            f"fp32 {rate32:.1f})")
