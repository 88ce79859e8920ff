"""Parameter blobs read from a ``.caffemodel``, without parsing the whole file.

A ``.caffemodel`` is a serialized ``NetParameter`` whose layers carry their parameter
blobs. Parsing it whole (``ParseFromString``) holds the file and the parsed message in
memory together, and the importer would then copy every blob once more into the ONNX
model. :class:`CaffemodelWeights` instead scans the protobuf wire format: it records
where each layer's blobs lie in the file (top-level field 100 ``layer`` or 2 ``layers``;
inside a layer, field 1/4 ``name`` and 7/6 ``blobs``; inside a blob, ``shape``, the
legacy ``num``/``channels``/``height``/``width`` and the packed ``data``/``double_data``),
and reads one blob's bytes when its layer is converted. A packed float field is the
little-endian float32 buffer itself, so ``np.frombuffer`` turns it into an array without
a copy and the importer hands the same ``bytes`` object to ``TensorProto.raw_data``.
Peak memory is the ONNX model plus the largest blob. A writer that used the unpacked
encoding (legal, never produced by Caffe) gets a plain protobuf parse of that blob.

Blob shapes are checked the way Caffe's ``Net::CopyTrainedLayersFrom`` does: a blob
with ``shape`` must match exactly; a blob with the legacy 4-D fields matches when
``(num, channels, height, width)`` equals the expected shape left-padded with ones.
Unlike Caffe, a parameterised layer that the file lacks is an error (Caffe would run it
with its filler's random values, silently).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...base.errors import BadInput
from ...base.text import shape_text
from .params import ParamSpec
from .schema import BlobProto, BlobShape

__all__ = ["CaffemodelWeights", "array_bytes"]


def array_bytes(array: np.ndarray) -> bytes:
    """The little-endian float32 bytes of ``array``, without a copy when it already is a view
    of a whole ``bytes`` object of that layout (what :class:`CaffemodelWeights` returns)."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if (isinstance(base, bytes) and array.dtype == np.dtype("<f4")
            and array.flags.c_contiguous and array.nbytes == len(base)):
        return base
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


@dataclass
class _BlobRecord:
    start: int                      # the BlobProto message's first byte in the file
    end: int
    shape: Optional[Tuple[int, ...]] = None
    legacy: Optional[Tuple[int, int, int, int]] = None
    chunks: List[Tuple[int, int]] = field(default_factory=list)   # packed data
    double_chunks: List[Tuple[int, int]] = field(default_factory=list)
    needs_parse: bool = False       # unpacked encoding: parse the blob with protobuf
    values: Optional[np.ndarray] = None   # set by that parse


@dataclass
class _LayerRecord:
    name: str
    blobs: List[_BlobRecord]


_WT_VARINT, _WT_I64, _WT_LEN, _WT_I32 = 0, 1, 2, 5


class _Wire:
    """Reads protobuf wire-format headers at absolute positions of an open file."""

    def __init__(self, handle: BinaryIO, path: str, size: int):
        self.handle, self.path, self.size = handle, path, size

    def truncated(self, pos: int, what: str) -> BadInput:
        return BadInput(f"{self.path}: truncated or not a Caffe .caffemodel ({what} at byte "
                        f"{pos} runs past the end of its record; file size {self.size} bytes)")

    def varint(self, pos: int, end: int) -> Tuple[int, int]:
        self.handle.seek(pos)
        buf = self.handle.read(min(10, max(end - pos, 0)))
        value = shift = 0
        for i, byte in enumerate(buf):
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos + i + 1
            shift += 7
        raise self.truncated(pos, "a varint")

    def fields(self, start: int, end: int, names: Optional[Dict[int, str]] = None):
        """Yield ``(number, wire_type, value, pos)`` for the fields in ``[start, end)``;
        ``value`` is the varint, or ``(offset, length)`` of a length-delimited payload,
        or the offset of a fixed-size one. ``names`` name fields in error messages."""
        pos = start
        while pos < end:
            key, after = self.varint(pos, end)
            number, wire_type = key >> 3, key & 7
            if number == 0 or wire_type not in (_WT_VARINT, _WT_I64, _WT_LEN, _WT_I32):
                raise BadInput(f"{self.path}: not a Caffe .caffemodel (invalid protobuf field "
                               f"key {key} at byte {pos})")
            if wire_type == _WT_VARINT:
                value, nxt = self.varint(after, end)
            elif wire_type == _WT_LEN:
                length, body = self.varint(after, end)
                nxt = body + length
                value = (body, length)
            else:
                value = after
                nxt = after + (8 if wire_type == _WT_I64 else 4)
            if nxt > end:
                raise self.truncated(pos, (names or {}).get(number, f"field {number}"))
            yield number, wire_type, value, pos
            pos = nxt

    def read(self, offset: int, length: int) -> bytes:
        self.handle.seek(offset)
        data = self.handle.read(length)
        if len(data) != length:
            raise self.truncated(offset, "a payload")
        return data


class CaffemodelWeights:
    """Parameter blobs of a ``.caffemodel``, indexed by layer name and read on demand.

    Args:
        path: the ``.caffemodel`` file.

    Raises:
        BadInput: the file cannot be read, is truncated, is not a serialized Caffe
            ``NetParameter`` or holds no layers.
    """

    # NetParameter field -> (name field, blobs field) of the layer message it holds.
    _LAYER_FIELDS = {100: (1, 7), 2: (4, 6)}
    _RECORD_NAMES = {100: "a layer record", 2: "a V1 layer record"}

    def __init__(self, path: str):
        self.path = str(path)
        try:
            self._handle = open(self.path, "rb")
            self.size = os.fstat(self._handle.fileno()).st_size
        except OSError as exc:
            raise BadInput(f"{self.path}: cannot read the weights file ({exc.strerror or exc})") \
                from None
        self._wire = _Wire(self._handle, self.path, self.size)
        try:
            self.layers = self._index()
        except BaseException:
            self.close()
            raise
        self.used: set = set()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- index ----------------------------------------------------------------------

    def _index(self) -> Dict[str, _LayerRecord]:
        if self.size == 0:
            raise BadInput(f"{self.path}: the .caffemodel file is empty")
        wire = self._wire
        layers: Dict[str, _LayerRecord] = {}
        for number, wire_type, value, pos in wire.fields(0, self.size, self._RECORD_NAMES):
            if number not in self._LAYER_FIELDS or wire_type != _WT_LEN:
                continue
            name_field, blobs_field = self._LAYER_FIELDS[number]
            body, length = value
            name, blobs, v0 = None, [], False
            for sub, sub_type, sub_value, _ in wire.fields(body, body + length):
                if sub == name_field and sub_type == _WT_LEN:
                    name = wire.read(*sub_value).decode("utf-8", errors="replace")
                elif sub == blobs_field and sub_type == _WT_LEN:
                    blobs.append(self._index_blob(*sub_value))
                elif number == 2 and sub == 1 and sub_type == _WT_LEN:
                    v0 = True
            if name is None and v0:
                raise BadInput(f"{self.path}: a V0-format .caffemodel (layer record at byte "
                               f"{pos}); upgrade it with Caffe's upgrade_net_proto_binary")
            # Caffe copies layer by layer in file order; a repeated name: the last wins.
            layers[name or ""] = _LayerRecord(name or "", blobs)
        if not layers:
            raise BadInput(f"{self.path}: not a Caffe .caffemodel (no layer records in "
                           f"{self.size} bytes)")
        return layers

    def _index_blob(self, start: int, length: int) -> _BlobRecord:
        record = _BlobRecord(start, start + length)
        legacy = [None, None, None, None]
        for number, wire_type, value, _ in self._wire.fields(start, start + length):
            if number == 7 and wire_type == _WT_LEN:
                try:
                    shape = BlobShape.FromString(self._wire.read(*value))
                except Exception:  # noqa: BLE001 - any decode failure is a bad file
                    raise BadInput(f"{self.path}: malformed blob shape at byte {value[0]}") \
                        from None
                record.shape = tuple(int(d) for d in shape.dim)
            elif 1 <= number <= 4 and wire_type == _WT_VARINT:
                legacy[number - 1] = value - (1 << 64) if value >= 1 << 63 else value
            elif number == 5:
                if wire_type == _WT_LEN:
                    record.chunks.append(value)
                else:
                    record.needs_parse = True
                    break
            elif number == 8:
                if wire_type == _WT_LEN:
                    record.double_chunks.append(value)
                else:
                    record.needs_parse = True
                    break
        if any(d is not None for d in legacy):
            record.legacy = tuple(0 if d is None else int(d) for d in legacy)
        return record

    # -- fetch ----------------------------------------------------------------------

    def fetch(self, layer_name: str, layer_type: str,
              specs: Sequence[ParamSpec]) -> List[np.ndarray]:
        """The blobs of ``layer_name``, checked against ``specs``.

        Raises:
            BadInput: the layer is missing, has a different number of blobs, or a blob
                whose shape or element count does not fit.
        """
        where = f"{self.path}: layer '{layer_name}' ({layer_type})"
        record = self.layers.get(layer_name)
        if record is None:
            raise BadInput(f"{where} has no parameters in this .caffemodel "
                           f"(expected {len(specs)} blobs); is it the model of this prototxt?")
        if len(record.blobs) != len(specs):
            raise BadInput(f"{where} has {len(record.blobs)} blobs but the prototxt implies "
                           f"{len(specs)} ({', '.join(s.role + ' ' + shape_text(s.shape) for s in specs)})")
        self.used.add(layer_name)
        return [self._read_blob(where, j, blob, spec)
                for j, (blob, spec) in enumerate(zip(record.blobs, specs))]

    def _read_blob(self, where: str, j: int, blob: _BlobRecord, spec: ParamSpec) -> np.ndarray:
        expected = tuple(int(d) for d in spec.shape)
        if blob.needs_parse:
            blob = self._parse_blob(blob)
        if blob.legacy is not None:
            got = blob.legacy
            fits = len(expected) <= 4 and got == (1,) * (4 - len(expected)) + expected
        else:
            got = blob.shape if blob.shape is not None else ()
            fits = got == expected
        if not fits:
            raise BadInput(f"{where} blob {j} ({spec.role}) has shape {shape_text(got)} but "
                           f"the prototxt implies {shape_text(expected)}")
        count = int(np.prod(expected, dtype=np.int64))
        if blob.values is not None:
            values = blob.values
        elif blob.double_chunks:
            values = np.frombuffer(self._join(blob.double_chunks), dtype="<f8").astype(np.float32)
        else:
            values = np.frombuffer(self._join(blob.chunks), dtype="<f4")
        if values.size != count:
            raise BadInput(f"{where} blob {j} ({spec.role}) of shape {shape_text(expected)} "
                           f"holds {values.size} values, expected {count}")
        return values.reshape(expected)

    def _join(self, chunks: List[Tuple[int, int]]) -> bytes:
        if len(chunks) == 1:
            return self._wire.read(*chunks[0])
        return b"".join(self._wire.read(*chunk) for chunk in chunks)

    def _parse_blob(self, blob: _BlobRecord) -> _BlobRecord:
        """Parse a whole blob with protobuf (for encodings the wire scan does not read)."""
        payload = self._wire.read(blob.start, blob.end - blob.start)
        try:
            message = BlobProto.FromString(payload)
        except Exception:  # noqa: BLE001 - any decode failure is a bad file
            raise BadInput(f"{self.path}: malformed blob at byte {blob.start}") from None
        parsed = _BlobRecord(blob.start, blob.end)
        source = message.double_data if len(message.double_data) else message.data
        parsed.values = np.array(source, dtype=np.float32)
        if any(message.HasField(f) for f in ("num", "channels", "height", "width")):
            parsed.legacy = (message.num, message.channels, message.height, message.width)
        else:
            parsed.shape = tuple(int(d) for d in message.shape.dim)
        return parsed
