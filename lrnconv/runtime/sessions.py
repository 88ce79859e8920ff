"""The one place that runs ONNX Runtime sessions.

Sessions pinned to exactly one provider (a session ONNX Runtime silently moved to another
is refused), intermediate tensors exposed as extra outputs, and runs of one chunk of samples
(``inputs.Chunk``) with the padding of a fixed-batch run cut off again. Calibration and
verification both go through here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from ..base.errors import ProviderUnavailable
from .inputs import Chunk
from .providers import onnxruntime_build


class RuntimeRefused(Exception):
    """ONNX Runtime would not create a session for, or run, a model (its message is kept)."""


def _first_line(exc: Exception) -> str:
    """ONNX Runtime's message without its source paths and C++ signatures."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    text = re.sub(r"/onnxruntime_src/\S+ ", "", text)
    return re.sub(r"onnxruntime::\S+\([^)]*\)( const)? (\[with [^\]]*\] )?", "", text)


@dataclass
class Session:
    """An ONNX Runtime session pinned to one provider, with the names it can return."""

    inner: ort.InferenceSession
    provider: str
    output_names: List[str]

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """One ONNX Runtime run.

        Raises:
            RuntimeRefused: ONNX Runtime rejected the feeds or failed while running.
        """
        names = list(outputs or self.output_names)
        try:
            values = self.inner.run(names, dict(feeds))
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise RuntimeRefused(_first_line(exc)) from None
        return dict(zip(names, values))

    def run_chunk(self, chunk: Chunk, outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """One run of a chunk; the rows that padded it are cut from every batched result.

        A result is batched when its leading dim is the chunk's row count; the others (a
        scalar, a loop's iteration count) come back whole.
        """
        got = self.run(chunk.feeds, outputs)
        if chunk.real == chunk.rows:
            return got
        return {name: value[:chunk.real] if value.ndim and value.shape[0] == chunk.rows else value
                for name, value in got.items()}


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
