"""What this CPU can do for int8: model, cores, top frequency and the instruction-set features that decide
whether an int8 model runs faster than its float32 twin, read from /proc/cpuinfo.

int8 inference is fast where the CPU multiplies and adds four int8 pairs in one instruction: VNNI on x86
(avx512_vnni, avx_vnni, or AMX), SDOT/UDOT on Arm (`asimddp`, Armv8.2 cores such as the Pi 5's Cortex-A76).
Without them (the Pi 4's Cortex-A72, x86 with only AVX2) int8 gains come from smaller data alone and can be
none at all, so a benchmark ratio means little without these flags beside it.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
CPUFREQ_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")

# The features reported, in this order; the kernel's own names (x86 `flags`, Arm `Features`)
X86_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
# `neon` is what a 32-bit Arm kernel calls Advanced SIMD (Raspberry Pi OS 32-bit on a Pi 4), `asimd` a 64-bit one
ARM_FEATURES = ("asimd", "neon", "asimddp", "i8mm", "sve")
X86_INT8_DOT = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
ARM_INT8_DOT = frozenset({"asimddp"})

# Arm Ltd's (implementer 0x41) `CPU part` numbers for the cores an edge device is likely to have
ARM_PARTS = {
    0xB76: "ARM1176",
    0xC07: "Cortex-A7",
    0xC08: "Cortex-A8",
    0xC09: "Cortex-A9",
    0xC0F: "Cortex-A15",
    0xD03: "Cortex-A53",
    0xD04: "Cortex-A35",
    0xD05: "Cortex-A55",
    0xD07: "Cortex-A57",
    0xD08: "Cortex-A72",
    0xD09: "Cortex-A73",
    0xD0A: "Cortex-A75",
    0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1",
    0xD0D: "Cortex-A77",
    0xD40: "Neoverse-V1",
    0xD41: "Cortex-A78",
    0xD44: "Cortex-X1",
    0xD46: "Cortex-A510",
    0xD47: "Cortex-A710",
    0xD49: "Neoverse-N2",
    0xD4F: "Neoverse-V2",
}
ARM_IMPLEMENTER = 0x41


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as /proc/cpuinfo (and cpufreq) describe it; None where they do not say."""

    model: str | None
    board: str | None  # the `Model` line a Raspberry Pi kernel adds ('Raspberry Pi 5 Model B Rev 1.0')
    arch: str | None  # 'x86' or 'arm': which feature list applies
    cores: int | None
    max_mhz: float | None
    features: tuple[str, ...]  # the int8-relevant ones present, in X86_FEATURES / ARM_FEATURES order
    int8_dot_product: bool | None  # None when the kernel lists no features at all

    def summary(self) -> str:
        """One line: 'AMD EPYC, 2 cores, 2596 MHz, avx2 fma avx512f avx512_vnni: int8 dot-product yes'."""
        parts = [self.model or "unknown CPU"]
        if self.board:
            parts.insert(0, self.board)
        if self.cores is not None:
            parts.append(f"{self.cores} cores")
        if self.max_mhz is not None:
            parts.append(f"{self.max_mhz:.0f} MHz")
        if self.arch is not None:
            parts.append(" ".join(self.features) or "no SIMD features listed")
        verdict = {True: "yes", False: "no", None: "unknown"}[self.int8_dot_product]
        return ", ".join(parts) + f": int8 dot-product {verdict}"

    def to_dict(self) -> dict[str, object]:
        """The fields a benchmark report's device section records."""
        return {
            "cpu": self.model,
            "max_mhz": self.max_mhz,
            "cpu_features": list(self.features),
            "int8_dot_product": self.int8_dot_product,
        }


def _blocks(text: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Per-processor key/value blocks, and the keys outside any (Arm's trailing Hardware/Revision/Model)."""
    processors: list[dict[str, str]] = []
    other: dict[str, str] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if not line.strip():
                current = None  # a blank line ends a processor's block
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            current = {}
            processors.append(current)
        elif current is not None:
            current.setdefault(key, value)
        else:
            other.setdefault(key, value)
    return processors, other


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 16) if text is not None else None
    except ValueError:
        return None


def _arm_core(block: dict[str, str]) -> str | None:
    part = _hex(block.get("CPU part"))
    if _hex(block.get("CPU implementer")) == ARM_IMPLEMENTER and part is not None:
        return ARM_PARTS.get(part, f"Arm part {part:#x}")
    return None


def parse(text: str, cpufreq_max_khz: str | None = None) -> CpuInfo:
    """A CpuInfo from /proc/cpuinfo's text, and cpuinfo_max_freq's (kHz) where the kernel has cpufreq."""
    processors, other = _blocks(text)
    blocks = processors or ([other] if other else [])
    arch = None
    feature_sets = []
    for block in blocks:
        if "flags" in block:
            arch = "x86"
            feature_sets.append(set(block["flags"].split()))
        elif "Features" in block:
            arch = arch or "arm"
            feature_sets.append(set(block["Features"].split()))
    # big.LITTLE cores can differ: a feature counts only when every core has it
    common = set.intersection(*feature_sets) if feature_sets else set()
    wanted = X86_FEATURES if arch == "x86" else ARM_FEATURES
    features = tuple(f for f in wanted if f in common)
    dot = None if arch is None else bool(common & (X86_INT8_DOT if arch == "x86" else ARM_INT8_DOT))

    cores_named = list(dict.fromkeys(c for b in blocks if (c := _arm_core(b))))
    model = next((b["model name"] for b in blocks if b.get("model name")), None)
    if cores_named:  # an Arm core's name says more than a 32-bit kernel's 'ARMv7 Processor rev 3 (v7l)'
        model = " + ".join(cores_named)
    model = model or other.get("Hardware") or other.get("cpu model") or None

    # cpufreq's maximum where the kernel has it (a Pi, most bare metal); a VM has none, and its `cpu MHz` is the
    # clock the hypervisor reports (the highest core's is taken), which is what its timings ran at
    khz = _float(cpufreq_max_khz.strip() if cpufreq_max_khz else None)
    mhz_lines = [m for b in blocks if (m := _float(b.get("cpu MHz"))) is not None]
    max_mhz = khz / 1000 if khz else (max(mhz_lines) if mhz_lines else None)
    board = other.get("Model") or None
    return CpuInfo(model, board, arch, len(processors) or None, max_mhz, features, dot)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def describe(path: Path | None = None, cpufreq_max: Path | None = None) -> CpuInfo:
    """This machine's CpuInfo (from CPUINFO and CPUFREQ_MAX unless given); the model falls back to platform's
    where /proc/cpuinfo is missing or silent."""
    info = parse(_read(path or CPUINFO) or "", _read(cpufreq_max or CPUFREQ_MAX))
    if info.model is None:
        info = replace(info, model=platform.processor() or platform.machine() or None)
    return info


def throttled() -> str | None:
    """`vcgencmd get_throttled` on a Pi ('0x0' = never throttled since boot), else None."""
    if shutil.which("vcgencmd") is None:
        return None
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().split("=")[-1] or None
