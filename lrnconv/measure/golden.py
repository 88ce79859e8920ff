"""Golden outputs: a reference run (its inputs and outputs) kept in a file, compared against later.

``verify --save-outputs FILE`` records the samples and the reference's outputs on the first
provider; ``verify --load-outputs FILE`` compares a candidate against them on another day,
machine or provider (a CUDA run against a CPU golden), or against outputs the original
framework produced. The file is an ``.npz``:

* ``input:NAME`` — a batched input, leading axis = samples; ``whole:NAME`` — an input fed
  whole (a condition, a trip count);
* ``output:NAME`` — the reference's output NAME, leading axis = samples;
* ``lrnconv:meta`` — a JSON string: lrnconv version, provider, samples, what was compared.

A file written by another tool may instead name its arrays after the model's inputs and
outputs directly; both spellings are read.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

import numpy as np
import onnx

from ..base.errors import BadInput
from ..base.files import Writer
from ..runtime.inputs import Chunk, Samples, array_samples, input_specs

META_KEY = "lrnconv:meta"


@dataclass
class Golden:
    """The samples of a golden file and the reference outputs that go with them."""

    samples: Samples
    outputs: Dict[str, np.ndarray]
    meta: Dict[str, object] = field(default_factory=dict)

    def expected(self, chunk: Chunk, names) -> Dict[str, np.ndarray]:
        """The golden outputs for a chunk's real rows."""
        return {name: np.asarray(self.outputs[name][chunk.start:chunk.start + chunk.real]) for name in names}


def load_golden(path: str, model: onnx.ModelProto) -> Golden:
    """A golden file for ``model`` (its inputs and reference outputs).

    Raises:
        BadInput: not a readable .npz, or inputs or outputs of the model missing or of another
            sample count (the file is named).
    """
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such golden-outputs file")
    try:
        data = np.load(path, allow_pickle=False)
        files = list(data.files)
    except Exception as exc:  # numpy raises several types for malformed files
        raise BadInput(f"{path}: not a readable .npz file ({exc})") from None
    inputs = {s.name for s in input_specs(model)}
    outputs = [o.name for o in model.graph.output]

    def named(kind: str, name: str) -> Optional[str]:
        for key in (f"{kind}:{name}", name):
            if key in files:
                return key
        return None

    arrays = {}
    for name in inputs:
        key = named("input", name) or named("whole", name)
        if key is not None:
            arrays[name] = data[key]
    golden_outputs = {}
    for name in outputs:
        key = named("output", name)
        if key is None:
            raise BadInput(f"{path}: no golden values for output '{name}' (has {sorted(files)})")
        golden_outputs[name] = data[key]
    samples = array_samples(model, arrays, what=path)
    for name, values in golden_outputs.items():
        if len(values) != samples.count:
            raise BadInput(f"{path}: output '{name}' holds {len(values)} samples, the inputs {samples.count}")
    meta = json.loads(str(data[META_KEY])) if META_KEY in files else {"source": "another tool"}
    return Golden(samples, golden_outputs, meta)


@dataclass
class GoldenRecorder:
    """Collects what a verification fed and what the reference answered, for ``golden_writer``."""

    inputs: Dict[str, List[np.ndarray]] = field(default_factory=dict)
    whole: Dict[str, np.ndarray] = field(default_factory=dict)
    outputs: Dict[str, List[np.ndarray]] = field(default_factory=dict)
    meta: Dict[str, object] = field(default_factory=dict)

    def add(self, chunk: Chunk, whole: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
        """One chunk: its real rows of every batched input, the inputs fed whole, the outputs."""
        for name, value in chunk.feeds.items():
            if name in whole:
                self.whole[name] = np.asarray(value)
            else:
                self.inputs.setdefault(name, []).append(np.asarray(value[:chunk.real]))
        for name, value in expected.items():
            self.outputs.setdefault(name, []).append(np.asarray(value))


def golden_writer(recorder: GoldenRecorder) -> Writer:
    """A writer of the recorded run as a golden ``.npz`` (for ``lrnconv.base.files.write_files``)."""
    def write(path: str) -> None:
        arrays = {f"input:{k}": np.concatenate(v) for k, v in recorder.inputs.items()}
        arrays.update({f"whole:{k}": v for k, v in recorder.whole.items()})
        arrays.update({f"output:{k}": np.concatenate(v) for k, v in recorder.outputs.items()})
        arrays[META_KEY] = np.asarray(json.dumps(recorder.meta))
        with open(path, "wb") as handle:  # savez on a handle: no '.npz' appended to the temporary name
            np.savez(handle, **arrays)
    return write
