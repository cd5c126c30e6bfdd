"""argparse types shared by every stage: numbers that must be finite ("nan" and "inf" are refused)."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """A float option value; NaN and infinities are usage errors (exit 2), never silently ignored."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def rgb_triple(text: str) -> tuple[float, float, float]:
    """A per-channel value (--mean, --std): one number for all three channels, or three (R,G,B)."""
    parts = [finite_float(p) for p in text.replace(",", " ").split()]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("give one number or three (R,G,B)")
    return parts[0], parts[1], parts[2]
