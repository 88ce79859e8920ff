"""Data files as model inputs: ``.npy``, ``.npz`` and folders of images.

A ``.npy`` file feeds the model's one batched input (leading axis = samples) and is
memory-mapped, so calibration and verification stream it chunk by chunk; an ``.npz`` holds
arrays keyed by input name; a folder of images feeds a single NCHW input after Caffe-era
preprocessing (``ImagePreprocessing``). The arrays are checked against the model by
``inputs.array_samples``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import onnx

from ..base.errors import BadInput
from .inputs import input_specs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _batched_names(model: onnx.ModelProto, given: Mapping[str, np.ndarray]):
    return [s.name for s in input_specs(model) if s.batched and s.name not in given]


def load_arrays(path: str, model: onnx.ModelProto, samples: Optional[int] = None,
                values: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
    """Arrays from a .npy (the one batched input) or .npz (keyed by input name) file.

    Args:
        samples: keep only the first ``samples``. Defaults to None (all).
        values: inputs set otherwise (``--input``), which the file need not hold.
    """
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such data file")
    try:  # .npy is memory-mapped: calibration and verification stream it chunk by chunk
        data = np.load(path, allow_pickle=False, mmap_mode="r" if path.endswith(".npy") else None)
    except Exception as exc:  # numpy raises several types for malformed files
        raise BadInput(f"{path}: not a readable .npy/.npz file ({exc})") from None
    if isinstance(data, np.ndarray):
        names = _batched_names(model, values or {})
        if len(names) != 1:
            raise BadInput(f"{path}: a .npy file feeds a model with one batched input; this one has {names}")
        arrays = {names[0]: data}
    else:
        arrays = {name: data[name] for name in data.files}
    if samples is not None:
        batched = {s.name for s in input_specs(model) if s.batched}
        arrays = {k: (v[:samples] if k in batched and np.ndim(v) else v) for k, v in arrays.items()}
    return arrays


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
    specs = [s for s in input_specs(model) if s.batched]
    if len(specs) != 1:
        raise BadInput(f"{path}: an image folder feeds single-input models; use an .npz for this one")
    (spec,) = specs
    dims = [d if isinstance(d, int) else None for d in (spec.dims or ())]
    if len(dims) != 4:
        raise BadInput(f"{path}: image folders feed NCHW inputs; input '{spec.name}' has rank {len(dims)}")
    channels = dims[1] or 3
    if channels not in (1, 3):
        raise BadInput(f"{path}: images have 1 or 3 channels; input '{spec.name}' takes {channels}")
    for option, values in (("--mean", preprocessing.mean), ("--std", preprocessing.std)):
        if len(values) not in (1, channels):
            raise BadInput(f"{path}: {option} has {len(values)} values; input '{spec.name}' has {channels} channels")
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
    return {spec.name: batch.astype(spec.dtype)}


def load_data(path: str, model: onnx.ModelProto, samples: Optional[int] = None,
              preprocessing: Optional[ImagePreprocessing] = None,
              values: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
    """Inputs from a .npy/.npz file or a folder of images."""
    if os.path.isdir(path):
        return load_image_folder(path, model, preprocessing or ImagePreprocessing(), samples)
    return load_arrays(path, model, samples, values)
