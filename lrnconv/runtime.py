"""The one place that talks to ONNX Runtime.

Provider resolution (``cpu``, ``cuda`` or full provider names), detection of a provider
that ONNX Runtime silently replaced, sessions with intermediate tensors exposed as
extra outputs, and batched runs. Calibration and verification both go through here.
"""
from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from .errors import ProviderUnavailable, UsageError

SHORT_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
               "tensorrt": "TensorrtExecutionProvider", "rocm": "ROCMExecutionProvider",
               "openvino": "OpenVINOExecutionProvider", "dml": "DmlExecutionProvider"}


class RuntimeRefused(Exception):
    """ONNX Runtime would not create a session for, or run, a model (its message is kept)."""


def _first_line(exc: Exception) -> str:
    """ONNX Runtime's message without its source paths and C++ signatures."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    text = re.sub(r"/onnxruntime_src/\S+ ", "", text)
    return re.sub(r"onnxruntime::\S+\([^)]*\)( const)? (\[with [^\]]*\] )?", "", text)


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


@dataclass
class Session:
    """An ONNX Runtime session pinned to one provider, with the names it can return."""

    inner: ort.InferenceSession
    provider: str
    output_names: List[str]

    def batches(self, feeds: Dict[str, np.ndarray], batch_size: Optional[int] = None,
                outputs: Optional[Sequence[str]] = None) -> Iterator[Dict[str, np.ndarray]]:
        """Outputs batch by batch over the leading axis (memory stays one batch)."""
        names = list(outputs or self.output_names)
        total = next(iter(feeds.values())).shape[0] if feeds else 1
        step = batch_size or total
        for start in range(0, total, step):
            batch = {k: v[start:start + step] for k, v in feeds.items()}
            try:
                values = self.inner.run(names, batch)
            except Exception as exc:  # onnxruntime raises its own pybind exception types
                raise RuntimeRefused(_first_line(exc)) from None
            yield dict(zip(names, values))

    def run(self, feeds: Dict[str, np.ndarray], batch_size: Optional[int] = None,
            outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """Run over the leading axis in batches and concatenate the results."""
        parts = list(self.batches(feeds, batch_size, outputs))
        return {n: np.concatenate([p[n] for p in parts], axis=0) if len(parts) > 1 else parts[0][n]
                for n in parts[0]}


def _with_extra_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    """Serialized model with intermediate tensors appended as graph outputs.

    The outputs are appended to the proto, serialized, and removed again, so a large
    model is never copied as a ModelProto.
    """
    existing = {o.name for o in model.graph.output}
    extra = [n for n in names if n not in existing]
    for name in extra:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    try:
        return model.SerializeToString()
    finally:
        for _ in extra:
            del model.graph.output[-1]


def create_session(model: onnx.ModelProto, provider: str,
                   expose: Sequence[str] = (), threads: Optional[int] = None,
                   spinning: bool = True) -> Session:
    """A session on exactly ``provider``; intermediate tensors ``expose`` become outputs.

    ``spinning=False`` lets the intra-op threads sleep as soon as a parallel section ends
    (ONNX Runtime's default keeps them spinning a while), for sessions timed side by side:
    otherwise the threads of the session that just ran spin over the next one's runs.

    Raises:
        RuntimeRefused: ONNX Runtime rejected the model.
        ProviderUnavailable: ONNX Runtime created the session on another provider.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 4  # refusals are reported by lrnconv, not logged twice
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    payload = _with_extra_outputs(model, expose)
    try:
        inner = ort.InferenceSession(payload, sess_options=options, providers=[provider])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise RuntimeRefused(_first_line(exc)) from None
    if inner.get_providers()[0] != provider:
        raise ProviderUnavailable(f"ONNX Runtime silently replaced {provider} by "
                                  f"{inner.get_providers()[0]} ({onnxruntime_build()})")
    return Session(inner, provider, [o.name for o in inner.get_outputs()])
