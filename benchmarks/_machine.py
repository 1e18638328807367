"""What every benchmark prints about the machine it ran on (shared by the scripts here)."""

from __future__ import annotations

import os
import platform
from typing import Any

from similar_images.models.int8_isa import cpu_isa  # the INT8 arithmetic OpenVINO uses here
from similar_images.models.speeds import (
    machine as cpu_info,  # CPU model, usable cores, ISA flags
)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def machine_info() -> dict[str, Any]:
    """CPU, usable cores, ISA flags, INT8 ISA, Python, OS and the current load average.

    ``int8_isa`` is the level OpenVINO's INT8 kernels run at (``avx2``, ``avx512_vnni``,
    ``amx``, ...; capped by ``ONEDNN_MAX_CPU_ISA``): every speed figure depends on it, and
    INT8 fidelity does too (benchmarks/README.md, "INT8 on other CPUs")."""
    return {**cpu_info(), "int8_isa": cpu_isa(), "python": platform.python_version(), "os": platform.platform(),
            "load": load_average()}


def machine_line() -> str:
    info = machine_info()
    load = ", ".join(f"{x:.1f}" for x in info["load"]) or "?"
    return (f"{info['cpu']}, {info['cores']} usable cores ({' '.join(info['isa'])}; INT8 ISA {info['int8_isa']}), "
            f"Python {info['python']}, load average {load}")
