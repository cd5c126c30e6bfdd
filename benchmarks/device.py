"""The machine a benchmark ran on: CPU, its int8-relevant features (edgeclf.edge_app.cpuinfo), cores, OS, Python,
numpy, and on a Pi its model, temperature and throttling flags."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from edgeclf.edge_app import cpuinfo
from edgeclf.edge_app.cpuinfo import throttled
from edgeclf.edge_app.picamera import pi_model

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_name() -> str:
    """The CPU model (x86 'model name', an Arm core's name from its part number), else platform's."""
    return cpuinfo.describe().model or "unknown"


def cpu_temperature() -> float | None:
    """SoC temperature in degrees C, where the kernel exposes it."""
    try:
        return int(THERMAL.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def thermal_state() -> dict[str, Any]:
    """Temperature and throttling now (taken before and after a benchmark)."""
    return {"cpu_temp_c": cpu_temperature(), "throttled": throttled()}


def describe() -> dict[str, Any]:
    """Everything that identifies the machine and software a number was measured on, with the CPU features
    that decide whether int8 is faster than float32 there."""
    import numpy

    cpu = cpuinfo.describe()
    return {
        "machine": platform.machine(),
        **cpu.to_dict(),  # cpu, max_mhz, cpu_features, int8_dot_product
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pi_model": pi_model(),
    }


def slug(device: dict[str, Any]) -> str:
    """A short folder-friendly name: 'raspberry-pi-5' or 'x86_64-2core'."""
    if device.get("pi_model"):
        words = device["pi_model"].lower().split()
        return "-".join(words[:4]).replace("model", "").strip("-")
    return f"{device['machine']}-{device['cores']}core"
