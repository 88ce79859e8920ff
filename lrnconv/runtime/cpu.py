"""What this machine's CPU does to ONNX Runtime's 8-bit arithmetic.

On x86-64 without VNNI (AVX2, or AVX-512 without ``avx512_vnni``), ONNX Runtime's MLAS
computes u8 x s8 dot products with ``VPMADDUBSW``, which adds each pair of products into
a saturating int16: with full 8-bit weights the sums clip (255 * 127 * 2 > 32767) and the
INT8 model's drift measured here is the kernel's, not the quantization's. VNNI
(``VPDPBUSD``) accumulates in int32 and ARM's dot products do not saturate.
"""
from __future__ import annotations

import functools
import platform
from typing import FrozenSet, Optional

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_VNNI = ("avx512_vnni", "avx_vnni")


def _linux_flags() -> Optional[FrozenSet[str]]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


@functools.lru_cache(maxsize=1)
def int8_dot_saturates() -> bool:
    """True when ONNX Runtime's int8 convolutions and matmuls may saturate on this CPU
    (x86 without VNNI, or an x86 whose flags cannot be read: the safe assumption)."""
    if platform.machine().lower() not in _X86:
        return False
    flags = _linux_flags()
    return flags is None or not any(f in flags for f in _VNNI)
