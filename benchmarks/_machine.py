"""What every benchmark prints about the machine it ran on (shared by the scripts here)."""

from __future__ import annotations

import os
import platform
from typing import Any

from similar_images.models.speeds import (
    machine as cpu_info,  # CPU model, usable cores, ISA flags
)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def machine_info() -> dict[str, Any]:
    """CPU, usable cores, ISA, Python, OS and the current load average."""
    return {**cpu_info(), "python": platform.python_version(), "os": platform.platform(),
            "load": load_average()}


def machine_line() -> str:
    info = machine_info()
    load = ", ".join(f"{x:.1f}" for x in info["load"]) or "?"
    return (f"{info['cpu']}, {info['cores']} usable cores ({' '.join(info['isa'])}), "
            f"Python {info['python']}, load average {load}")
