"""Model inputs for verification and calibration: loaded from .npy/.npz or seeded random.

Random inputs imitate what Caffe-era CNNs see on real data: 0-255 pixels minus the
mean, so float inputs are drawn uniformly from [-128, 128). With inputs near 0 the
LRN term alpha/size * sum(x^2) vanishes and every drift check passes vacuously.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import onnx

from ..base.errors import BadInput

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
    try:  # .npy is memory-mapped: calibration streams it batch by batch
        data = np.load(path, allow_pickle=False, mmap_mode="r" if path.endswith(".npy") else None)
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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImagePreprocessing:
    """How a folder of images becomes a model input (Caffe-era defaults: BGR, 0-255 minus mean).

    ``size`` is (height, width); None takes it from the model's input. Pixels are
    resized (bilinear), converted to float 0-255, channel-reordered to BGR when ``bgr``,
    then ``(pixel - mean) / std`` per channel, in the model's channel order.
    """

    mean: Tuple[float, ...] = (0.0, 0.0, 0.0)
    std: Tuple[float, ...] = (1.0, 1.0, 1.0)
    size: Optional[Tuple[int, int]] = None
    bgr: bool = False


def load_image_folder(path: str, model: onnx.ModelProto, preprocessing: ImagePreprocessing,
                      samples: Optional[int] = None) -> Dict[str, np.ndarray]:
    """A single-input NCHW model's input from every image in a folder (sorted by name)."""
    try:
        from PIL import Image
    except ImportError:
        raise BadInput(f"{path}: reading images needs Pillow: pip install 'lrnconv[images]'") from None
    (value_info,) = graph_inputs(model) if len(graph_inputs(model)) == 1 else (None,)
    if value_info is None:
        raise BadInput(f"{path}: an image folder feeds single-input models; use an .npz for this one")
    dims = [d.dim_value or None for d in value_info.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise BadInput(f"{path}: image folders feed NCHW inputs; input '{value_info.name}' has rank {len(dims)}")
    channels = dims[1] or 3
    height, width = preprocessing.size or (dims[2], dims[3])
    if not height or not width:
        raise BadInput(f"{path}: the model's input size is dynamic; pass --size H,W")
    files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES))
    if samples is not None:
        files = files[:samples]
    if not files:
        raise BadInput(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    mean = np.asarray(preprocessing.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(preprocessing.std, np.float32).reshape(-1, 1, 1)
    batch = np.empty((len(files), channels, height, width), np.float32)
    for i, name in enumerate(files):
        try:
            with Image.open(os.path.join(path, name)) as image:
                image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
                pixels = np.asarray(image, np.float32)
        except OSError as exc:
            raise BadInput(f"{os.path.join(path, name)}: not a readable image ({exc})") from None
        chw = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        if preprocessing.bgr and channels == 3:
            chw = chw[::-1]
        batch[i] = (chw - mean) / std
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)
    return {value_info.name: batch.astype(dtype)}


def load_data(path: str, model: onnx.ModelProto, samples: Optional[int] = None,
              preprocessing: Optional[ImagePreprocessing] = None) -> Dict[str, np.ndarray]:
    """Inputs from a .npy/.npz file or a folder of images."""
    if os.path.isdir(path):
        return load_image_folder(path, model, preprocessing or ImagePreprocessing(), samples)
    return load_inputs(path, model, samples)
