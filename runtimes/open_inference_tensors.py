"""The Open Inference Protocol's tensors, read and written in one place for both sides: our client
of remote engines (runtimes/open_inference.py) and our own server (api/open_inference.py).

A tensor is `{"name", "datatype", "shape", "data"}`, its data flat (or nested) in row-major order;
with the binary tensor extension (Triton's docs/protocol/extension_binary_data.md) its bytes
follow the JSON header instead, little-endian, `parameters.binary_data_size` long, the header's
own length in `Inference-Header-Content-Length`. BYTES elements are each a 4-byte little-endian
length and the bytes, in binary; strings in JSON.

Everything here refuses what does not add up (sizes that lie, data that does not fill the shape,
values outside the datatype, a non-finite number for JSON) with a TensorError whose message names the
tensor and the problem, never the data, so a server can answer it to the client as it is.
"""
from __future__ import annotations

import math
import struct

import numpy as np

V2_TYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
BYTES = "BYTES"            # variable-length byte strings (numpy object arrays of bytes here)
_V2_NAMES = {np.dtype(t): name for name, t in V2_TYPES.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_EXTENSION = "binary_tensor_data"   # what a server lists in its metadata's extensions
MAX_DIMS = 8               # more dimensions than any image network has
_LENGTH = struct.Struct("<I")


class TensorError(ValueError):
    """A tensor or body that is not what the protocol says; the message is safe to show."""


def v2_name(dtype: np.dtype) -> str:
    """The protocol's name of a numpy data type (UINT8, FP32, ...); BYTES for bytes objects."""
    dtype = np.dtype(dtype)
    return BYTES if dtype == np.dtype(object) else _V2_NAMES[dtype]


def shown(name) -> str:
    """A client's tensor name as a message quotes it: at most 64 printable characters."""
    text = str(name)
    return "".join(c if c.isprintable() else "?" for c in text[:64]) + ("…" if len(text) > 64 else "")


# --- reading ----------------------------------------------------------------------------------

def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """(the JSON header, the binary data after it): the whole body is JSON without the header."""
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 20) or not 0 < int(text) <= len(body):
        raise TensorError(f"{HEADER_LENGTH} must be the length of the JSON header: a whole number "
                          f"from 1 to the body's {len(body)} bytes")
    split = int(text)
    return body[:split], memoryview(body)[split:]


def read_tensors(items, raw: memoryview, what: str, datatypes=(*V2_TYPES, BYTES)) -> list[tuple[str, np.ndarray]]:
    """(name, array) for each of the header's tensor entries, `what` ("input", "output") naming
    them in messages; binary ones cut from `raw` in order, which they must use up exactly."""
    if not isinstance(items, list):
        raise TensorError(f"'{what}s' must be a list of tensors")
    tensors, offset = [], 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise TensorError(f"{what} {index} is not a tensor object")
        size = _binary_size(item, f"{what} '{shown(item.get('name'))}'")
        chunk = None
        if size is not None:
            if offset + size > len(raw):
                raise TensorError(f"{what} '{shown(item.get('name'))}' has binary_data_size {size}, "
                                  f"more than the {len(raw) - offset} bytes of binary data left")
            chunk, offset = raw[offset:offset + size], offset + size
        tensors.append(read_tensor(item, chunk, what, datatypes))
    if offset != len(raw):
        raise TensorError(f"{len(raw) - offset} bytes of binary data follow the header that no {what}'s "
                          "binary_data_size counts")
    return tensors


def _binary_size(item: dict, where: str) -> int | None:
    parameters = item.get("parameters", {})
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise TensorError(f"{where}: 'parameters' must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TensorError(f"{where}: binary_data_size must be a whole number of bytes")
    return size


def read_tensor(item: dict, chunk: memoryview | None, what: str, datatypes) -> tuple[str, np.ndarray]:
    """One tensor entry as an array of its shape: from `chunk` (its binary data) or its JSON data."""
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not name or len(name) > 256:
        raise TensorError(f"every {what} needs a 'name' (a string of 1 to 256 characters)")
    where = f"{what} '{shown(name)}'"
    if datatype not in datatypes:
        raise TensorError(f"{where}: datatype {shown(datatype)!r} is not one of {', '.join(datatypes)}")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise TensorError(f"{where}: 'shape' must be a list of at most {MAX_DIMS} whole numbers >= 0")
    count = math.prod(shape)
    if chunk is not None:
        array = _from_bytes(chunk, datatype, count, where)
    elif "data" in item:
        array = _from_json(item["data"], datatype, count, where)
    else:
        raise TensorError(f"{where} has neither 'data' nor parameters.binary_data_size")
    return name, array.reshape(shape)


def _from_bytes(chunk: memoryview, datatype: str, count: int, where: str) -> np.ndarray:
    if datatype == BYTES:
        return _bytes_elements(chunk, count, where)
    dtype = np.dtype(V2_TYPES[datatype])
    if len(chunk) != count * dtype.itemsize:
        raise TensorError(f"{where}: {len(chunk)} bytes of binary data for {count} {datatype} values "
                          f"({count * dtype.itemsize} bytes)")
    # A copy in the machine's byte order: writable, and the body it came from can go. NaN and
    # infinity are data here (JSON has none): whoever feeds a network checks them.
    return np.frombuffer(chunk, dtype.newbyteorder("<")).astype(dtype)


def _bytes_elements(chunk: memoryview, count: int, where: str) -> np.ndarray:
    """BYTES elements, each a 4-byte little-endian length and that many bytes, filling `chunk`."""
    elements, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise TensorError(f"{where}: a BYTES element's 4-byte length is cut off")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        if offset + 4 + length > len(chunk):
            raise TensorError(f"{where}: a BYTES element says {length} bytes, more than the binary data holds")
        elements.append(bytes(chunk[offset + 4:offset + 4 + length]))
        offset += 4 + length
    if len(elements) != count:
        raise TensorError(f"{where}: the binary data holds {len(elements)} BYTES elements, the shape {count}")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def _from_json(data, datatype: str, count: int, where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise TensorError(f"{where}: 'data' must be a list")
    flat = _flattened(data, where)
    if len(flat) != count:
        raise TensorError(f"{where}: 'data' holds {len(flat)} values, the shape {count}")
    if datatype == BYTES:
        if not all(isinstance(v, str) for v in flat):
            raise TensorError(f"{where}: BYTES data must be strings")
        array = np.empty(count, dtype=object)
        array[:] = [v.encode("utf-8", "surrogatepass") for v in flat]
        return array
    dtype = np.dtype(V2_TYPES[datatype])
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise TensorError(f"{where}: BOOL data must be true or false")
        return np.array(flat, dtype=dtype)
    whole = dtype.kind in "iu"
    if not all(isinstance(v, int if whole else (int, float)) and not isinstance(v, bool) for v in flat):
        raise TensorError(f"{where}: {datatype} data must be {'whole numbers' if whole else 'numbers'}")
    if whole:
        limits = np.iinfo(dtype)
        if flat and not (limits.min <= min(flat) and max(flat) <= limits.max):
            raise TensorError(f"{where}: a value is outside {datatype}'s range")
    with np.errstate(over="ignore", invalid="ignore"):   # a value past FP16/FP32's range: refused below
        return finite(np.array(flat, dtype=dtype if whole else np.float64).astype(dtype), where)


def _flattened(data: list, where: str) -> list:
    """Nested lists' values in row-major order (the protocol allows either form)."""
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def finite(array: np.ndarray, where: str) -> np.ndarray:
    """The array, if its values are finite: JSON carries no NaN or infinity, and a network fed
    them answers nothing a client can use."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise TensorError(f"{where}: the values must be finite numbers (no NaN or infinity; "
                          "within the datatype's range)")
    return array


# --- writing ----------------------------------------------------------------------------------

def bytes_elements(array: np.ndarray) -> bytes:
    """A BYTES tensor's binary data: each element's 4-byte little-endian length, then it."""
    return b"".join(_LENGTH.pack(len(v)) + v for v in np.asarray(array, dtype=object).ravel())


def write_tensors(tensors: list[tuple[str, np.ndarray, bool]]) -> tuple[list[dict], bytes]:
    """Each (name, array, binary) as a response entry, its data in JSON (a numpy array: dump the
    entries with orjson's OPT_SERIALIZE_NUMPY, which writes each value in its own precision) or,
    when `binary`, in the returned bytes (in order, after the header). JSON cannot carry a
    non-finite number: TensorError for such a tensor unless it goes binary."""
    entries, chunks = [], []
    for name, array, binary in tensors:
        entry = {"name": name, "datatype": v2_name(array.dtype), "shape": list(array.shape)}
        if array.dtype == np.dtype(object):
            if binary:
                chunks.append(bytes_elements(array))
            else:
                entry["data"] = [v.decode("utf-8", "replace") for v in array.ravel()]
        elif binary:
            chunks.append(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
        else:
            entry["data"] = np.ascontiguousarray(finite(array, f"output '{shown(name)}'")).ravel()
        if binary:
            entry["parameters"] = {"binary_data_size": len(chunks[-1])}
        entries.append(entry)
    return entries, b"".join(chunks)
