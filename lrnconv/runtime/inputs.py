"""Model inputs for verification and calibration: what each input expects, and samples to feed it.

Every graph input has a *batch contract*, read from its declared shape (``InputSpec``):

* **batched, dynamic** — the leading dim is symbolic (``N``) or unknown: any number of rows;
* **batched, fixed at N** — a fixed leading dim on a tensor of rank >= 2 (zoo exports say 1,
  PyTorch exports the example's batch): exactly N rows per run;
* **whole** — rank 0 (an ``If`` condition, a ``Loop`` trip count), or a rank-1 tensor of a fixed
  length or of integers (a shape): not batched at all, fed as it is to every run, never sliced.

``Samples`` are the batched inputs sample by sample (from arrays, memory-mapped ``.npy``
included, or drawn at random one sample at a time from a per-sample seed, so the same seed
gives the same samples whatever the chunking) plus the whole inputs. ``Samples.chunks`` cuts
them into runs the model accepts: ``rows_per_run`` rows for a dynamic batch, N for a fixed
one, the last run padded by repeating its last sample, and every ``Chunk`` says how many of
its rows are real, so padding never reaches a metric.

Random batched inputs imitate what Caffe-era CNNs see on real data: 0-255 pixels minus the
mean, so floats are drawn uniformly from [-128, 128). (With inputs near 0 the LRN term
alpha/size * sum(x^2) vanishes and every drift check passes vacuously.) Random whole inputs
are chosen to make a model run: a bool condition is True (the then-branch; set the other with
``--input NAME=false``), an integer scalar (a trip count) is 1, a float scalar 1.0; an integer
tensor (a shape) cannot be guessed and must be given with ``--input NAME=VALUE``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from ..base.errors import BadInput, UnsupportedModel, UsageError
from ..base.text import shape_text

PIXEL_LOW, PIXEL_HIGH = -128.0, 128.0
DEFAULT_ROWS = 16
"""Rows per ONNX Runtime run when the batch is dynamic."""

Dim = Union[int, str, None]


@dataclass(frozen=True)
class InputSpec:
    """One real graph input: its element type, declared dims and batch contract."""

    name: str
    elem_type: int
    dims: Optional[Tuple[Dim, ...]]
    """Declared dims (an int, a symbolic name, or None when unknown); None: no shape at all."""

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))

    @property
    def batched(self) -> bool:
        """True unless the input is rank 0, or rank 1 of a fixed length or of integers (fed whole)."""
        if self.dims is None:
            return True
        if len(self.dims) == 0:
            return False
        return not (len(self.dims) == 1 and (isinstance(self.dims[0], int) or self.dtype.kind in "iub"))

    @property
    def fixed_batch(self) -> Optional[int]:
        """N when the model only accepts N rows per run, else None."""
        if self.batched and self.dims and isinstance(self.dims[0], int) and self.dims[0] > 0:
            return self.dims[0]
        return None

    def describe(self) -> str:
        if self.dims is None:
            return f"'{self.name}' (shape unknown)"
        return f"'{self.name}' [{', '.join('?' if d is None else str(d) for d in self.dims)}]"


def input_specs(model: onnx.ModelProto) -> List[InputSpec]:
    """The model's real inputs (IR-3 models also list their initializers as inputs)."""
    initializers = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        tensor = vi.type.tensor_type
        dims: Optional[Tuple[Dim, ...]] = None
        if tensor.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                         for d in tensor.shape.dim)
        specs.append(InputSpec(vi.name, tensor.elem_type, dims))
    return specs


def graph_inputs(model: onnx.ModelProto):
    """The real inputs' ValueInfoProtos (IR-3 models also list their initializers as inputs)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


@dataclass(frozen=True)
class Chunk:
    """One ONNX Runtime run's feeds: ``rows`` rows of which the first ``real`` are samples."""

    feeds: Dict[str, np.ndarray]
    start: int
    """Index of the chunk's first sample."""
    real: int
    rows: int


@dataclass
class Samples:
    """The samples a model is run on: batched inputs row by row, and the inputs fed whole.

    Attributes:
        count: the number of samples.
        source: rows ``[start, stop)`` of every batched input.
        whole: the inputs fed as they are to every run.
        kind: what they are, for reports ("given samples", "seeded random samples ...").
        random: True when drawn at random for want of data.
        rows_hint: rows per run asked for (``--input-shapes``' leading dim), for dynamic batches.
        origin: where they come from (a data file's path), for error messages.
    """

    count: int
    source: Callable[[int, int], Dict[str, np.ndarray]]
    whole: Dict[str, np.ndarray]
    kind: str
    random: bool = False
    rows_hint: Optional[int] = None
    origin: str = "data"

    @property
    def description(self) -> str:
        return f"{self.count} {self.kind}"

    def rows(self, start: int, stop: int) -> Dict[str, np.ndarray]:
        """The batched inputs of samples ``[start, stop)``."""
        return self.source(start, stop)

    def subset(self, start: int, stop: int) -> "Samples":
        """Samples ``[start, stop)`` (a view: nothing is copied)."""
        stop = min(stop, self.count)
        source = self.source
        return Samples(stop - start, lambda a, b: source(start + a, start + b), self.whole, self.kind,
                       self.random, self.rows_hint, self.origin)

    def finite(self, drop: bool = False, step: int = DEFAULT_ROWS) -> Tuple["Samples", int]:
        """The samples whose every batched value is finite, read once chunk by chunk.

        Args:
            drop: leave out samples holding NaN or Inf (and count them). Defaults to False:
                refuse them.

        Returns:
            (the finite samples, how many were dropped).

        Raises:
            BadInput: a sample holds NaN or Inf and ``drop`` is False (the first one is named).
        """
        keep: List[int] = []
        for start in range(0, self.count, step):
            rows = self.source(start, min(start + step, self.count))
            good = np.ones(min(step, self.count - start), bool)
            for name, array in rows.items():
                if array.dtype.kind != "f":
                    continue
                bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
                if bad.any() and not drop:
                    raise BadInput(f"{self.origin}: sample {start + int(np.argmax(bad))} of input '{name}' holds "
                                   "NaN or Inf; calibration needs finite data (--drop-nonfinite leaves such "
                                   "samples out)")
                good &= ~bad
            keep.extend(start + int(i) for i in np.flatnonzero(good))
        dropped = self.count - len(keep)
        if not dropped:
            return self, 0
        if not keep:
            raise BadInput(f"{self.origin}: every sample holds NaN or Inf")
        source, chosen = self.source, np.asarray(keep)

        def finite_rows(start: int, stop: int) -> Dict[str, np.ndarray]:
            picked = [source(int(i), int(i) + 1) for i in chosen[start:stop]]
            return {name: np.concatenate([p[name] for p in picked]) for name in picked[0]} if picked else {}

        return Samples(len(keep), finite_rows, self.whole, self.kind, self.random, self.rows_hint, self.origin), dropped

    def halves(self) -> Tuple["Samples", "Samples"]:
        """(first half, second half); the first takes the odd sample."""
        half = (self.count + 1) // 2
        return self.subset(0, half), self.subset(half, self.count)

    def chunks(self, rows: int, pad: bool) -> Iterator[Chunk]:
        """Runs of ``rows`` samples; with ``pad`` the last one is filled up to ``rows``."""
        for start in range(0, self.count, rows):
            stop = min(start + rows, self.count)
            real = stop - start
            batched = self.source(start, stop)
            if pad and real < rows:
                batched = {k: np.concatenate([v, np.repeat(v[-1:], rows - real, axis=0)]) for k, v in batched.items()}
            yield Chunk({**batched, **self.whole}, start, real, rows if pad else real)


def rows_per_run(specs: Iterable[InputSpec], hint: Optional[int] = None) -> Tuple[int, bool]:
    """(rows per run, whether runs must be padded to exactly that) for models with these inputs.

    Raises:
        UnsupportedModel: inputs fix different batch sizes.
    """
    fixed = sorted({s.fixed_batch for s in specs if s.fixed_batch})
    if len(fixed) > 1:
        raise UnsupportedModel(f"the inputs fix different batch sizes {fixed}; lrnconv cannot feed them together")
    if fixed:
        return fixed[0], True
    return hint or DEFAULT_ROWS, False


# --------------------------------------------------------------------------------- parsing

def parse_input_shapes(texts: Iterable[str]) -> Dict[str, Tuple[int, ...]]:
    """``name:1,3,224,224`` or Polygraphy's ``name:[1,3,224,224]`` -> {name: shape}.

    Raises:
        UsageError: a malformed entry (the expected form is shown).
    """
    shapes = {}
    for text in texts:
        for entry in text.split():
            name, sep, dims = entry.rpartition(":")
            try:
                shape = tuple(int(d) for d in dims.strip("[]()").split(",") if d.strip())
            except ValueError:
                shape = ()
            if not sep or not name or not shape or min(shape) <= 0:
                raise UsageError(f"--input-shapes '{entry}': expected NAME:D0,D1,... with positive dims, "
                                 "e.g. data:1,3,224,224")
            shapes[name] = shape
    return shapes


def parse_input_values(texts: Iterable[str], specs: Sequence[InputSpec]) -> Dict[str, np.ndarray]:
    """``NAME=VALUE`` (``cond=true``, ``trip=3``, ``shape=1,3,224,224``) -> arrays in each input's dtype.

    Raises:
        UsageError: a malformed entry, an unknown input name, or a value its type cannot hold.
    """
    by_name = {s.name: s for s in specs}
    values = {}
    for text in texts:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--input '{text}': expected NAME=VALUE, e.g. cond=true or trip=3")
        spec = by_name.get(name)
        if spec is None:
            raise UsageError(f"--input '{text}': the model has no input '{name}' "
                             f"(inputs: {', '.join(by_name)})")
        items = [v.strip() for v in re.split(r"[,\s]+", value.strip().strip("[]")) if v.strip()]
        try:
            if spec.dtype == np.bool_:
                words = {"true": True, "1": True, "false": False, "0": False}
                parsed = [words[v.lower()] for v in items]
            else:
                parsed = [float(v) for v in items]
                if spec.dtype.kind in "iu" and any(v != int(v) for v in parsed):
                    raise ValueError(value)
            array = np.asarray(parsed, dtype=spec.dtype)
        except (KeyError, ValueError, OverflowError):
            raise UsageError(f"--input '{text}': '{value}' is not a valid {spec.dtype.name} value") from None
        if spec.dims is not None and len(spec.dims) == 0:
            if array.size != 1:
                raise UsageError(f"--input '{text}': input '{name}' is a scalar; give one value")
            array = array.reshape(())
        values[name] = array
    return values


# --------------------------------------------------------------------------------- samples

def _sample_shape(spec: InputSpec, shapes: Mapping[str, Tuple[int, ...]]) -> Tuple[int, ...]:
    """The shape of one sample of a batched input (from --input-shapes where it is given)."""
    if spec.name in shapes:
        return tuple(shapes[spec.name][1:])
    if spec.dims is None:
        raise BadInput(f"input {spec.describe()} has no declared shape; give it with "
                       f"--input-shapes {spec.name}:N,C,H,W or pass real data")
    inner = spec.dims[1:]
    if 0 in inner:
        raise BadInput(f"input {spec.describe()} has a zero-sized dimension {inner.index(0) + 1}: it holds no data "
                       "and cannot be fed")
    symbolic = [(i + 1, d) for i, d in enumerate(inner) if not isinstance(d, int)]
    if symbolic:
        axis, name = symbolic[0]
        raise BadInput(f"input {spec.describe()} has a symbolic dimension {axis} ('{name or '?'}'); "
                       f"give its shape with --input-shapes {spec.name}:1,{','.join(str(d) if isinstance(d, int) else '?' for d in inner)}"
                       f" (numbers in place of '?') or pass real data")
    return tuple(inner)


def _random_whole(spec: InputSpec, shapes: Mapping[str, Tuple[int, ...]]) -> Tuple[np.ndarray, Optional[str]]:
    """A value that makes the model run for an input fed whole, and a note when it is a guess."""
    shape = shapes.get(spec.name, tuple(d if isinstance(d, int) else 1 for d in (spec.dims or ())))
    if spec.dtype == np.bool_:
        return np.ones(shape, np.bool_), f"input '{spec.name}' (a condition) was fed True"
    if spec.dtype.kind in "iu":
        if shape:
            raise BadInput(f"input {spec.describe()} is an integer tensor fed whole (a shape or indices); "
                           f"give its value with --input {spec.name}=V0,V1,...")
        return np.ones((), spec.dtype), f"input '{spec.name}' (an integer scalar, e.g. a trip count) was fed 1"
    if not shape:
        return np.ones((), spec.dtype), f"input '{spec.name}' (a scalar) was fed 1.0"
    return np.random.default_rng(0).uniform(PIXEL_LOW, PIXEL_HIGH, shape).astype(spec.dtype), None


def random_samples(model: onnx.ModelProto, count: int, seed: int = 0, *,
                   shapes: Optional[Mapping[str, Tuple[int, ...]]] = None,
                   values: Optional[Mapping[str, np.ndarray]] = None) -> Tuple[Samples, List[str]]:
    """``count`` seeded random samples for the model, and notes on the whole inputs it guessed.

    Sample i of every batched input is drawn from ``default_rng([seed, i])``: floats uniform in
    [-128, 128), integers and bools 0 or 1.

    Raises:
        BadInput: a symbolic non-batch dim without ``shapes``, or an integer tensor fed whole
            without ``values`` (the message names the option that fixes it).
    """
    shapes, values = dict(shapes or {}), dict(values or {})
    specs = [s for s in input_specs(model) if s.name not in values]
    batched = [(s, _sample_shape(s, shapes)) for s in specs if s.batched]
    whole, notes = dict(values), []
    for spec in specs:
        if not spec.batched:
            whole[spec.name], note = _random_whole(spec, shapes)
            if note:
                notes.append(note + " (set it with --input NAME=VALUE)")

    def source(start: int, stop: int) -> Dict[str, np.ndarray]:
        rows: Dict[str, List[np.ndarray]] = {s.name: [] for s, _ in batched}
        for index in range(start, stop):
            rng = np.random.default_rng([seed, index])
            for spec, shape in batched:
                if spec.dtype.kind in "iub":
                    rows[spec.name].append(rng.integers(0, 2, size=shape).astype(spec.dtype))
                else:
                    rows[spec.name].append(rng.uniform(PIXEL_LOW, PIXEL_HIGH, size=shape).astype(spec.dtype))
        return {name: np.stack(r) if r else np.empty((0,)) for name, r in rows.items()}

    hints = [shapes[s.name][0] for s, _ in batched if s.name in shapes and s.fixed_batch is None]
    kind = f"seeded random samples (uniform [{PIXEL_LOW:g}, {PIXEL_HIGH:g}), seed {seed})"
    return Samples(count, source, whole, kind, random=True, rows_hint=hints[0] if hints else None), notes


def random_inputs(model: onnx.ModelProto, samples: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """``samples`` seeded random samples as arrays (leading axis = samples), and the whole inputs."""
    drawn, _ = random_samples(model, samples, seed)
    return {**drawn.rows(0, samples), **drawn.whole}


def _check_dtype(array: np.ndarray, spec: InputSpec, what: str) -> None:
    """Refuse what cannot be fed to the input: only numeric kinds that match (float to float ...)."""
    if array.dtype.kind not in "biuf":
        raise BadInput(f"{what}: dtype {array.dtype} is not numeric; input '{spec.name}' takes {spec.dtype.name}")
    if (array.dtype.kind == "f") != (spec.dtype.kind == "f") or (array.dtype.kind == "b") != (spec.dtype.kind == "b"):
        raise BadInput(f"{what}: dtype {array.dtype.name} does not fit input '{spec.name}' ({spec.dtype.name})")


def _as_input(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The array in the input's dtype and native byte order (a big-endian file is converted)."""
    return np.ascontiguousarray(array, dtype=spec.dtype)


def array_samples(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray], *,
                  values: Optional[Mapping[str, np.ndarray]] = None, what: str = "data") -> Samples:
    """Samples from arrays keyed by input name (leading axis = samples for batched inputs).

    Arrays for inputs that are fed whole are taken as they are; ``values`` set such inputs too.

    Raises:
        BadInput: an input without data, sample counts that differ, a shape that does not fit
            the input's declared dims, or a dtype that does not fit its type (``what`` names
            where the data came from).
    """
    values = dict(values or {})
    specs = input_specs(model)
    batched: Dict[str, Tuple[np.ndarray, InputSpec]] = {}
    whole = dict(values)
    missing = []
    for spec in specs:
        if spec.name in values:
            continue
        if spec.name not in arrays:
            if spec.batched:
                missing.append(spec.name)
                continue
            raise BadInput(f"{what}: no value for input {spec.describe()}, which is fed whole; "
                           f"give it with --input {spec.name}=VALUE")
        array = arrays[spec.name]
        if not isinstance(array, np.ndarray):
            array = np.asarray(array)
        _check_dtype(array, spec, what)
        if not spec.batched:
            whole[spec.name] = _as_input(array, spec)
            continue
        if array.ndim == 0:
            raise BadInput(f"{what}: input '{spec.name}' needs samples along a leading axis; got a 0-d array")
        expected = spec.dims[1:] if spec.dims is not None else None
        if expected is not None and (len(expected) != array.ndim - 1 or any(
                isinstance(d, int) and d != n for d, n in zip(expected, array.shape[1:]))):
            raise BadInput(f"{what}: input {spec.describe()} takes samples of shape "
                           f"[{', '.join(str(d) if isinstance(d, int) else '?' for d in expected)}]; "
                           f"the data has {shape_text(array.shape[1:])} per sample")
        batched[spec.name] = (array, spec)
    if missing:
        raise BadInput(f"{what}: missing arrays for inputs {missing} (has {sorted(arrays)})")
    counts = {name: len(array) for name, (array, _) in batched.items()}
    if len(set(counts.values())) > 1:
        raise BadInput(f"{what}: the inputs have different numbers of samples {counts}")
    count = next(iter(counts.values())) if counts else 1
    if count == 0:
        raise BadInput(f"{what}: no samples (the leading axis is empty)")

    def source(start: int, stop: int) -> Dict[str, np.ndarray]:
        return {name: _as_input(array[start:stop], spec) for name, (array, spec) in batched.items()}

    return Samples(count, source, whole, "given samples", origin=what)
