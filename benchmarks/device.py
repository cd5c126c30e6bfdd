"""The machine a benchmark ran on: CPU, cores, OS, Python, numpy, and on a Pi its model,
temperature and throttling flags."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edge_app.picamera import pi_model

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (x86 'model name', Arm 'Model' / 'Hardware'), else platform's."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_temperature() -> float | None:
    """SoC temperature in degrees C, where the kernel exposes it."""
    try:
        return int(THERMAL.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def throttled() -> str | None:
    """`vcgencmd get_throttled` on a Pi (0x0 = never throttled), else None."""
    if shutil.which("vcgencmd") is None:
        return None
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().split("=")[-1] or None


def thermal_state() -> dict[str, Any]:
    """Temperature and throttling now (taken before and after a benchmark)."""
    return {"cpu_temp_c": cpu_temperature(), "throttled": throttled()}


def describe() -> dict[str, Any]:
    """Everything that identifies the machine and software a number was measured on."""
    import numpy

    return {
        "machine": platform.machine(),
        "cpu": cpu_name(),
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
