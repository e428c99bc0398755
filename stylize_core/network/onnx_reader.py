"""A minimal reader of ONNX model files (no ``onnx`` package): the graph's nodes, initializers, inputs, outputs.

An ONNX file is one serialised protobuf ``ModelProto`` (``onnx/onnx.proto``). Protobuf's wire format is a
sequence of fields, each a key varint ``(field_number << 3) | wire_type`` followed by its value:
wire type 0 a varint (little-endian base-128, 7 bits a byte, high bit = more bytes follow; negative int64s
are 10-byte two's complement), 1 eight bytes, 2 a varint length and that many bytes (strings, bytes, nested
messages, packed repeated numbers), 5 four bytes. Repeated fields simply occur several times; unknown fields
are skipped. The fields read here (numbers as in ``onnx.proto``):

- ``ModelProto``: graph = 7
- ``GraphProto``: node = 1, initializer = 5, input = 11, output = 12
- ``NodeProto``: input = 1, output = 2, name = 3, op_type = 4, attribute = 5
- ``AttributeProto``: name = 1, f = 2, i = 3, s = 4, t = 5, floats = 7, ints = 8 (``type`` = 20 is implied
  by which of them is present)
- ``TensorProto``: dims = 1, data_type = 2, float_data = 4, int32_data = 5, int64_data = 7, name = 8,
  raw_data = 9 (raw_data: fixed-width little-endian values)
- ``ValueInfoProto``: name = 1, type = 2 -> ``TypeProto.tensor_type`` = 1 -> ``shape`` = 2 ->
  ``TensorShapeProto.dim`` = 1 -> ``dim_value`` = 1 or ``dim_param`` = 2 (a symbolic size, read as None)

Malformed input (truncated, not protobuf, a tensor whose data does not fill its dims) raises
:class:`OnnxFormatError` with a one-line reason; a field of an unexpected wire type (random bytes can
look like protobuf for a while) fails in the decoding with a TypeError or struct.error instead; :func:`read_model`
turns all of them into a one-line ``StylizeError``.
"""

import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import StylizeError

# TensorProto.DataType -> numpy dtype, for the types this reader decodes
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 11: np.float64}


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX model (as far as this reader looks)."""


@dataclass
class Node:
    op_type: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    nodes: list  # [Node], in the file's (topological) order
    initializers: dict  # name -> numpy array
    inputs: list  # [(name, shape)], shape a tuple with None for symbolic sizes
    outputs: list


def _varint(buf, pos):
    """``(value, next position)`` of the unsigned varint at ``pos``."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint longer than 10 bytes")


def _signed(value):
    """A varint read as int64 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(buf):
    """Yield ``(field number, wire type, value)`` of a message: an int for wire type 0, bytes otherwise."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OnnxFormatError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 2, 5):
            if wire == 2:
                size, pos = _varint(buf, pos)
            else:
                size = 8 if wire == 1 else 4
            if pos + size > end:
                raise OnnxFormatError(f"field {number} runs past the end of its message (truncated file?)")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise OnnxFormatError(f"unsupported wire type {wire}")
        yield number, wire, value


def _ints(wire, value):
    """The int64 values of one occurrence of a repeated integer field, packed (wire 2) or not."""
    if wire == 0:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


def _floats(wire, value):
    """The float32 values of one occurrence of a repeated float field, packed or not (wire 5)."""
    if wire not in (2, 5) or len(value) % 4:
        raise OnnxFormatError("malformed float field")
    return list(struct.unpack(f"<{len(value) // 4}f", value))


def _text(value):
    if not isinstance(value, bytes):
        raise OnnxFormatError("a string field is not length-delimited")
    return value.decode("utf-8", errors="replace")


def parse_tensor(buf):
    """``(name, numpy array)`` of a ``TensorProto``."""
    dims, dtype, name, raw, values = [], 1, "", None, []
    for number, wire, value in fields(buf):
        if number == 1:
            dims += _ints(wire, value)
        elif number == 2:
            dtype = value
        elif number == 4:
            values += _floats(wire, value)
        elif number in (5, 7):
            values += _ints(wire, value)
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = value
    if dtype not in DTYPES:
        raise OnnxFormatError(f"tensor {name!r}: unsupported data type {dtype}")
    count, little = int(np.prod(dims)) if dims else 1, np.dtype(DTYPES[dtype]).newbyteorder("<")
    size = len(raw) // little.itemsize if raw is not None else len(values)
    if size != count or (raw is not None and len(raw) % little.itemsize):
        raise OnnxFormatError(f"tensor {name!r}: {size} values for dims {dims}")
    array = np.frombuffer(raw, little) if raw is not None else np.array(values)
    return name, array.astype(DTYPES[dtype]).reshape(dims)


def _attribute(buf):
    """``(name, value)`` of an ``AttributeProto``: float, int, str, array or list."""
    name, value = "", None
    for number, wire, v in fields(buf):
        if number == 1:
            name = _text(v)
        elif number == 2:
            value = struct.unpack("<f", v)[0]
        elif number == 3:
            value = _signed(v)
        elif number == 4:
            value = _text(v)
        elif number == 5:
            value = parse_tensor(v)[1]
        elif number == 7:
            value = (value or []) + _floats(wire, v)
        elif number == 8:
            value = (value or []) + _ints(wire, v)
    return name, value


def _node(buf):
    node = Node("", "", [], [])
    for number, _, value in fields(buf):
        if number == 1:
            node.inputs.append(_text(value))
        elif number == 2:
            node.outputs.append(_text(value))
        elif number == 3:
            node.name = _text(value)
        elif number == 4:
            node.op_type = _text(value)
        elif number == 5:
            node.attrs.__setitem__(*_attribute(value))
    return node


def _value_info(buf):
    """``(name, shape)`` of a ``ValueInfoProto`` (shape None when not given)."""
    name, shape = "", None
    for number, _, value in fields(buf):
        if number == 1:
            name = _text(value)
        elif number == 2:
            for n, _, tensor_type in fields(value):
                for m, _, shape_proto in fields(tensor_type) if n == 1 else ():
                    if m == 2:
                        shape = tuple(_dim(d) for k, _, d in fields(shape_proto) if k == 1)
    return name, shape


def _dim(buf):
    """A ``TensorShapeProto.Dimension``: its ``dim_value``, or None for a symbolic ``dim_param``."""
    return next((_signed(v) for n, w, v in fields(buf) if n == 1 and w == 0), None)


def parse_model(data):
    """The :class:`Graph` of a serialised ``ModelProto`` (bytes)."""
    graphs = [value for number, wire, value in fields(data) if number == 7 and wire == 2]
    if not graphs:
        raise OnnxFormatError("no graph in the file")
    graph = Graph([], {}, [], [])
    for number, _, value in fields(graphs[-1]):
        if number == 1:
            graph.nodes.append(_node(value))
        elif number == 5:
            name, array = parse_tensor(value)
            graph.initializers[name] = array
        elif number in (11, 12):
            (graph.inputs if number == 11 else graph.outputs).append(_value_info(value))
    if not graph.nodes:
        raise OnnxFormatError("the graph has no nodes")
    return graph


def read_model(path):
    """The :class:`Graph` of the ONNX file at ``path``; a missing, unreadable or malformed file is a
    one-line ``StylizeError``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise StylizeError(f"cannot read the ONNX model {path}: {exc.strerror or exc}") from None
    try:
        return parse_model(data)
    except (ValueError, TypeError, struct.error, OverflowError) as exc:  # OnnxFormatError, or a field of the
        raise StylizeError(f"{path} is not a valid ONNX model ({exc})") from None  # wrong wire type in junk


def dequantize(q, scale, zero_point, axis):
    """``(q - zero_point) * scale`` in float32, as DequantizeLinear; a scale/zero point of more than one value
    is per channel along ``axis``."""

    def along(a):
        shape = [-1 if d == axis % q.ndim else 1 for d in range(q.ndim)] if a.size > 1 else ()
        return a.astype(np.float64).reshape(shape)

    return ((q.astype(np.float64) - (0 if zero_point is None else along(zero_point))) * along(scale)).astype(np.float32)


class Values:
    """The values of a graph being compiled: its constants (``consts``: initializers and what is folded into them)
    and the names that stand for another value (``alias``)."""

    def __init__(self, graph):
        self.consts, self.alias = dict(graph.initializers), {}

    def value(self, name):
        """The value ``name`` stands for."""
        while name in self.alias:
            name = self.alias[name]
        return name

    def nodes(self, graph):
        """``(node, inputs, output, op type)`` of every node but the quantisation ones, its inputs resolved: a
        Quantize/DequantizeLinear of a computed value is that value (int8 models keep float activations here), a
        DequantizeLinear of a constant is folded into ``consts`` as float32."""
        consts = self.consts
        for node in graph.nodes:
            ins = [self.value(n) for n in node.inputs]
            out, kind = node.outputs[0], node.op_type
            if kind in ("QuantizeLinear", "DequantizeLinear") and ins[0] not in consts:
                self.alias[out] = ins[0]
            elif kind == "DequantizeLinear":
                consts[out] = dequantize(
                    consts[ins[0]], consts[ins[1]], consts[ins[2]] if len(ins) > 2 else None, node.attrs.get("axis", 1)
                )
            else:
                yield node, ins, out, kind
