"""glibc's allocator set up for a process that runs for weeks and decodes large images in many threads.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB on 64-bit), so
after a few decodes a 29 MB image buffer comes from a thread's own arena, and each of the
server's request threads then keeps its freed buffers: measured with `edgeclf.benchmarks.web_memory`,
eight uploads of a 3600x2700 PNG left `serve` at 486 MB RSS for good. Fixing the threshold at
1 MiB makes every large buffer an mmap that is returned to the system when freed (the same run:
164 MB peak, 90 MB after).
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD = 1 << 20


def return_large_blocks(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold so freed large buffers go back to the system; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # musl and others have no mallopt: nothing to tune there
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
