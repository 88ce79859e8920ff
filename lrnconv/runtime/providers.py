"""Execution providers: short names, what this onnxruntime build has, and which build it is.

``cpu`` and ``cuda`` (and the other short names) resolve to ONNX Runtime's full provider
names; a provider the installed build lacks is an error naming the build, never a quiet
fallback (``sessions.create_session`` also refuses a session ONNX Runtime silently moved
to another provider).
"""
from __future__ import annotations

import importlib.metadata
from typing import Iterable, List

import onnxruntime as ort

from ..base.errors import ProviderUnavailable, UsageError

SHORT_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
               "tensorrt": "TensorrtExecutionProvider", "rocm": "ROCMExecutionProvider",
               "openvino": "OpenVINOExecutionProvider", "dml": "DmlExecutionProvider"}


def onnxruntime_build() -> str:
    """Which onnxruntime distribution is installed, e.g. 'onnxruntime 1.32.0'."""
    for dist in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"onnxruntime {ort.__version__}"


def resolve_providers(specs: Iterable[str]) -> List[str]:
    """Full, available provider names for ``cpu``/``cuda``/full names, in order.

    Raises:
        UsageError: an empty or unknown short name.
        ProviderUnavailable: a provider this onnxruntime build does not have.
    """
    resolved = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        name = SHORT_NAMES.get(spec.lower(), spec)
        if not name.endswith("ExecutionProvider"):
            raise UsageError(f"unknown provider '{spec}'; use cpu, cuda or a full ONNX Runtime "
                             f"provider name such as CUDAExecutionProvider")
        available = ort.get_available_providers()
        if name not in available:
            hint = (" (install the 'cuda' extra, which replaces onnxruntime with onnxruntime-gpu)"
                    if name == "CUDAExecutionProvider" else "")
            raise ProviderUnavailable(f"provider {name} is not available in {onnxruntime_build()} "
                                      f"(available: {', '.join(available)}){hint}")
        if name not in resolved:
            resolved.append(name)
    if not resolved:
        raise UsageError("no execution provider given")
    return resolved


def short_name(provider: str) -> str:
    for short, full in SHORT_NAMES.items():
        if full == provider:
            return short
    return provider
