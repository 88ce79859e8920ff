"""Model inputs for verification and calibration: loaded from .npy/.npz or seeded random.

Random inputs imitate what Caffe-era CNNs see on real data: 0-255 pixels minus the
mean, so float inputs are drawn uniformly from [-128, 128). With inputs near 0 the
LRN term alpha/size * sum(x^2) vanishes and every drift check passes vacuously.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
import onnx

from .errors import BadInput

PIXEL_LOW, PIXEL_HIGH = -128.0, 128.0
_INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT8,
              onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16}


def graph_inputs(model: onnx.ModelProto):
    """The real inputs of a model (IR-3 models also list their initializers as inputs)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _concrete_shape(value_info, samples: int):
    dims = []
    for i, d in enumerate(value_info.type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value)
        elif i == 0:
            dims.append(samples)
        else:
            raise BadInput(f"input '{value_info.name}' has an unknown dimension {i} "
                           f"('{d.dim_param or '?'}'); pass --data with real arrays")
    return dims


def random_inputs(model: onnx.ModelProto, samples: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Seeded inputs, leading (batch) axis = samples; floats uniform in [-128, 128)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in graph_inputs(model):
        elem = vi.type.tensor_type.elem_type
        shape = _concrete_shape(vi, samples)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        if elem in _INT_TYPES:
            feeds[vi.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            feeds[vi.name] = rng.uniform(PIXEL_LOW, PIXEL_HIGH, size=shape).astype(dtype)
    return feeds


def load_inputs(path: str, model: onnx.ModelProto, samples: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Arrays from a .npy (single-input models) or .npz (keyed by input name) file."""
    names = [vi.name for vi in graph_inputs(model)]
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such data file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for malformed files
        raise BadInput(f"{path}: not a readable .npy/.npz file ({exc})") from None
    if isinstance(data, np.ndarray):
        if len(names) != 1:
            raise BadInput(f"{path}: a .npy file feeds single-input models; this one has inputs {names}")
        feeds = {names[0]: data}
    else:
        missing = [n for n in names if n not in data.files]
        if missing:
            raise BadInput(f"{path}: missing arrays for inputs {missing} (has {sorted(data.files)})")
        feeds = {n: data[n] for n in names}
    if samples is not None:
        feeds = {k: v[:samples] for k, v in feeds.items()}
    return feeds
