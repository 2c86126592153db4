"""Named numpy arrays + JSON metadata in the safetensors format, without pickle.

One container format for everything hilserl keeps on disk or sends on the wire
(replay buffers, encoder weights, classifier heads, later policy weights). The
file is plain safetensors, so ``safetensors.safe_open`` and other tools read it;
hilserl adds three string entries to the safetensors ``__metadata__`` header:

- ``hilserl.format_version``: :data:`FORMAT_VERSION`; readers refuse newer files.
- ``hilserl.metadata``: the caller's metadata as one JSON document (an object).
- ``hilserl.sha256``: hex sha256 that detects a truncated or bit-flipped
  container on load (:class:`TensorIOError` says which file). Version 2 hashes
  the canonical tensor table (every tensor's name, dtype, shape and data offsets,
  sorted by name), the metadata JSON and the whole data section, each of the first
  two preceded by its length; a flipped bit in a tensor's name, dtype or shape is
  caught as well. Version 1 (files written before) hashed only the metadata JSON
  and the data; such files are still read and verified by that rule.

Every header is validated before anything is allocated from it: a JSON object
(nesting and duplicate keys refused), each tensor an object with a dtype from
the list below, a shape of non-negative integers, and data offsets that tile the
data section exactly; ``__metadata__`` an object of strings; the caller metadata
a JSON object. Whatever does not fit is a :class:`TensorIOError` naming the
problem, on the wire (:func:`from_bytes`) and for files alike: a receiver never
fails with any other exception on a malformed payload.

Files are written atomically (temporary file in the same directory, fsync,
``os.replace``): a crash mid-save leaves the previous file intact and at worst a
stray ``*.tmp-<pid>`` file, never a half-written container under the real name.

The writer streams each array straight from its memory (no serialised copy of
the whole payload), which matters for multi-GB image replay buffers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Mapping, Tuple, Union

import numpy as np

FORMAT_VERSION = 2
_OLDEST_VERSION = 1  # version 1: the checksum does not cover the tensor table (still read)

_KEY_VERSION = "hilserl.format_version"
_KEY_METADATA = "hilserl.metadata"
_KEY_SHA256 = "hilserl.sha256"

# safetensors dtype codes for the numpy dtypes we store.
_DTYPE_TO_CODE = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint16): "U16",
    np.dtype(np.int16): "I16",
    np.dtype(np.uint32): "U32",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint64): "U64",
    np.dtype(np.int64): "I64",
    np.dtype(np.float16): "F16",
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
}
_CODE_TO_DTYPE = {code: dt for dt, code in _DTYPE_TO_CODE.items()}
_HASH_CHUNK = 1 << 24  # 16 MiB per read when hashing a file
_MAX_NDIM = 32  # numpy 1.x's limit
_MAX_DIM = 2**63 - 1  # a dimension numpy can index
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}

PathLike = Union[str, os.PathLike]


class TensorIOError(ValueError):
    """A container could not be written or read; the message names the file and the fix."""


def _prepare(arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    out: Dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise TensorIOError(f"tensor names must be non-empty strings, got {name!r}")
        if name == "__metadata__":
            raise TensorIOError("'__metadata__' is reserved by safetensors; rename that tensor")
        arr = np.asarray(value)
        if arr.dtype not in _DTYPE_TO_CODE:
            raise TensorIOError(
                f"tensor {name!r} has dtype {arr.dtype}, which the container does not store; "
                f"use one of {sorted(str(d) for d in _DTYPE_TO_CODE)}"
            )
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        out[name] = np.require(arr, requirements="C")  # keeps 0-d arrays 0-d
    return out


def _digest(version: int, entries: Mapping[str, Any], meta_json: str) -> "hashlib._Hash":
    """sha256 state before the data section is fed in (see the module doc for each version's rule)."""
    meta_raw = meta_json.encode("utf-8")
    if version < 2:
        return hashlib.sha256(meta_raw)
    table = json.dumps(
        [[name, e["dtype"], list(e["shape"]), list(e["data_offsets"])] for name, e in sorted(entries.items())],
        separators=(",", ":"),
    ).encode("utf-8")
    digest = hashlib.sha256()
    for part in (table, meta_raw):
        digest.update(struct.pack("<Q", len(part)))
        digest.update(part)
    return digest


def _header(arrays: Dict[str, np.ndarray], metadata: Mapping[str, Any]) -> Tuple[bytes, str]:
    """Build the length-prefixed safetensors header; returns (header bytes, metadata JSON)."""
    meta_json = json.dumps(dict(metadata), sort_keys=True, allow_nan=True)
    entries: Dict[str, Any] = {}
    offset = 0
    for name in sorted(arrays):
        arr = arrays[name]
        entries[name] = {
            "dtype": _DTYPE_TO_CODE[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    digest = _digest(FORMAT_VERSION, entries, meta_json)
    for name in sorted(arrays):
        arr = arrays[name]
        if arr.nbytes:
            digest.update(memoryview(arr.reshape(-1)).cast("B"))
    entries["__metadata__"] = {
        _KEY_VERSION: str(FORMAT_VERSION),
        _KEY_METADATA: meta_json,
        _KEY_SHA256: digest.hexdigest(),
    }
    raw = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((-len(raw)) % 8)  # safetensors pads the header to 8-byte alignment
    return struct.pack("<Q", len(raw)) + raw, meta_json


def _write(stream: BinaryIO, arrays: Dict[str, np.ndarray], metadata: Mapping[str, Any]) -> None:
    head, _ = _header(arrays, metadata)
    stream.write(head)
    for name in sorted(arrays):
        arr = arrays[name]
        if arr.nbytes:
            stream.write(memoryview(arr.reshape(-1)).cast("B"))


def to_bytes(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any] | None = None) -> bytes:
    """Serialise named arrays + JSON-able metadata to safetensors bytes."""
    import io

    buf = io.BytesIO()
    _write(buf, _prepare(arrays), metadata or {})
    return buf.getvalue()


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"key {k!r} appears twice")
        out[k] = v
    return out


def _loads(text: str, what: str, where: str) -> Any:
    """json.loads that turns every failure (syntax, duplicate keys, deep nesting, huge ints) into TensorIOError."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError as exc:  # e.g. 100k nested '[': the C scanner's recursion guard
        raise TensorIOError(f"{where}: {what} is nested too deeply; the file is corrupt") from exc
    except _DuplicateKey as exc:
        raise TensorIOError(f"{where}: {what} is ambiguous ({exc}); the file is corrupt") from exc
    except ValueError as exc:  # JSONDecodeError, duplicate keys, int digits limit
        raise TensorIOError(f"{where}: {what} is not valid JSON ({exc}); the file is corrupt") from exc


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_entry(name: str, e: Any, data_len: int, where: str) -> None:
    """One tensor entry of the table: known dtype, shape of non-negative ints, offsets inside the data."""
    what = f"{where}: tensor {name!r}"
    if not name:
        raise TensorIOError(f"{where}: a tensor has an empty name; the file is corrupt")
    if not isinstance(e, dict):
        raise TensorIOError(f"{what}: its header entry must be a JSON object, got {type(e).__name__}")
    if set(e) != _ENTRY_KEYS:
        raise TensorIOError(f"{what}: header entry has keys {sorted(e)}, expected {sorted(_ENTRY_KEYS)}")
    code, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
    if not isinstance(code, str) or code not in _CODE_TO_DTYPE:
        raise TensorIOError(f"{what} has dtype {code!r}, which hilserl containers do not hold; "
                            f"expected one of {sorted(_CODE_TO_DTYPE)}")
    if (not isinstance(shape, list) or len(shape) > _MAX_NDIM
            or not all(_is_int(d) and 0 <= d <= _MAX_DIM for d in shape)):
        raise TensorIOError(f"{what} has shape {shape!r}; expected a list of at most {_MAX_NDIM} non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_len):
        raise TensorIOError(f"{what} has data_offsets {offsets!r}; expected [begin, end] with "
                            f"0 <= begin <= end <= {data_len} (the data section's size)")
    nbytes = math.prod(shape) * _CODE_TO_DTYPE[code].itemsize
    if nbytes != offsets[1] - offsets[0]:
        raise TensorIOError(f"{what}: shape {shape} of {code} needs {nbytes} bytes but its data_offsets "
                            f"span {offsets[1] - offsets[0]}; the file is corrupt")


def _parse_header(head: bytes, where: str, data_len: int) -> Tuple[Dict[str, Any], Dict[str, str], int]:
    """Validate a header completely; returns (tensor entries, hilserl metadata strings, format version).

    ``data_len`` is the size of the data section after the header.
    """
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TensorIOError(f"{where}: header is not UTF-8 ({exc}); the file is corrupt") from exc
    entries = _loads(text, "header", where)
    if not isinstance(entries, dict):
        raise TensorIOError(f"{where}: header must be a JSON object, got {type(entries).__name__}; the file is corrupt")
    meta = entries.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise TensorIOError(f"{where}: safetensors '__metadata__' must be a JSON object of strings; the file is corrupt")
    if _KEY_VERSION not in meta or _KEY_SHA256 not in meta:
        raise TensorIOError(
            f"{where}: not a hilserl container (no {_KEY_VERSION!r}/{_KEY_SHA256!r} in the "
            "safetensors metadata); write it with hilserl_core.formats.tensorio"
        )
    text_version = meta[_KEY_VERSION]
    if not (text_version.isascii() and text_version.isdigit() and len(text_version) <= 9):
        raise TensorIOError(f"{where}: {_KEY_VERSION} {text_version!r} is not a version number; the file is corrupt")
    version = int(text_version)
    if version > FORMAT_VERSION:
        raise TensorIOError(
            f"{where}: format version {version} is newer than this reader ({FORMAT_VERSION}); "
            "update hilserl"
        )
    if version < _OLDEST_VERSION:
        raise TensorIOError(f"{where}: format version {version} does not exist; the file is corrupt")
    if not _SHA256_HEX.fullmatch(meta[_KEY_SHA256]):
        raise TensorIOError(f"{where}: {_KEY_SHA256} is not 64 lowercase hex digits; the file is corrupt")
    for name, e in entries.items():
        _check_entry(name, e, data_len, where)
    # The tensors must tile the data section exactly (safetensors' own rule, checked here so
    # the message names the file; also no byte is left unchecked by the tensor table).
    end = 0
    for name, e in sorted(entries.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        begin, stop = e["data_offsets"]
        if begin != end:
            raise TensorIOError(f"{where}: tensor {name!r} starts at byte {begin} of the data, expected {end} "
                                "(tensors overlap or leave a gap); the file is corrupt")
        end = stop
    if end != data_len:
        raise TensorIOError(f"{where}: the tensors cover {end} bytes but the data section holds {data_len}; "
                            "the file is truncated or corrupt")
    return entries, meta, version


def _caller_metadata(meta: Mapping[str, str], where: str) -> Dict[str, Any]:
    out = _loads(meta.get(_KEY_METADATA, "{}"), _KEY_METADATA, where)
    if not isinstance(out, dict):
        raise TensorIOError(f"{where}: {_KEY_METADATA} must be a JSON object, got {type(out).__name__}")
    return out


def _check_digest(digest: "hashlib._Hash", meta: Mapping[str, str], where: str) -> Dict[str, Any]:
    if digest.hexdigest() != meta[_KEY_SHA256]:
        raise TensorIOError(
            f"{where}: sha256 checksum mismatch; the file is truncated or corrupt "
            "(restore it from a backup or re-create it)"
        )
    return _caller_metadata(meta, where)


def _restore_shapes(arrays: Mapping[str, np.ndarray], entries: Dict[str, Any]) -> Dict[str, np.ndarray]:
    # safetensors' numpy reader returns 0-d tensors as shape (1,); the header has the truth.
    return {k: v.reshape(entries[k]["shape"]) if k in entries else v for k, v in arrays.items()}


def _header_length(n: int, available: int, where: str) -> None:
    if n > available:
        raise TensorIOError(f"{where}: header length {n} exceeds the {available} bytes after the length prefix; "
                            "the file is truncated or corrupt")


def from_bytes(data: bytes) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Inverse of :func:`to_bytes`: returns (arrays, metadata); verifies the checksum.

    Any malformed input raises :class:`TensorIOError` (never another exception type).
    """
    from safetensors.numpy import load

    where = "<bytes>"
    if len(data) < 8:
        raise TensorIOError(f"{where}: {len(data)} bytes is too short for a safetensors container")
    (n,) = struct.unpack("<Q", data[:8])
    _header_length(n, len(data) - 8, where)
    entries, meta, version = _parse_header(bytes(data[8 : 8 + n]), where, len(data) - 8 - n)
    digest = _digest(version, entries, meta.get(_KEY_METADATA, "{}"))
    digest.update(memoryview(data)[8 + n :])
    metadata = _check_digest(digest, meta, where)
    try:
        arrays = load(bytes(data))
    except Exception as exc:  # safetensors raises its own error type
        raise TensorIOError(f"{where}: safetensors could not parse the payload ({exc})") from exc
    return _restore_shapes(arrays, entries), metadata


def save_file(
    path: PathLike, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Atomically write a container to ``path`` (temp file + fsync + rename)."""
    prepared = _prepare(arrays)
    return write_atomically(path, lambda f: _write(f, prepared, metadata or {}))


def write_atomically(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """``write(file)`` into a temporary file beside ``path``, fsync it, rename it over ``path`` and
    fsync the directory: after a crash or a power cut the old file or the new one is there, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # make the rename itself durable
    return path


def fsync_dir(path: PathLike) -> None:
    """fsync a directory, so renames and new entries in it survive a power cut (best effort:
    some platforms and filesystems have no directory handles or refuse fsync on them)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def read_metadata(path: PathLike) -> Dict[str, Any]:
    """The caller metadata of a container, without reading or verifying the tensors."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise TensorIOError(f"{path}: too short for a safetensors container")
        (n,) = struct.unpack("<Q", head)
        size = os.fstat(f.fileno()).st_size
        _header_length(n, size - 8, str(path))
        _, meta, _ = _parse_header(f.read(n), str(path), size - 8 - n)
    return _caller_metadata(meta, str(path))


class FileReader:
    """Read tensors of a container one at a time (bounded memory for large buffers).

    Opening verifies the format version and, with ``verify``, the sha256 checksum.
    ``metadata`` is the caller metadata; ``tensors`` maps name -> (shape, dtype).
    Use as a context manager; :meth:`get` returns a fresh numpy array.
    """

    def __init__(self, path: PathLike, verify: bool = True):
        from safetensors import safe_open

        self.path = Path(path)
        where = str(self.path)
        if not self.path.is_file():
            raise TensorIOError(f"{where}: no such file")
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise TensorIOError(f"{where}: too short for a safetensors container")
            (n,) = struct.unpack("<Q", head)
            size = os.fstat(f.fileno()).st_size
            _header_length(n, size - 8, where)
            header = f.read(n)
            if len(header) < n:
                raise TensorIOError(f"{where}: truncated inside the header")
            entries, meta, version = _parse_header(header, where, size - 8 - n)
            if verify:
                digest = _digest(version, entries, meta.get(_KEY_METADATA, "{}"))
                while True:
                    chunk = f.read(_HASH_CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                self.metadata = _check_digest(digest, meta, where)
            else:
                self.metadata = _caller_metadata(meta, where)
        self._entries = entries
        try:
            self.tensors: Dict[str, Tuple[Tuple[int, ...], np.dtype]] = {
                k: (tuple(v["shape"]), _CODE_TO_DTYPE[v["dtype"]]) for k, v in entries.items()
            }
            self._handle = safe_open(where, framework="numpy")
        except Exception as exc:
            raise TensorIOError(f"{where}: safetensors could not parse the payload ({exc})") from exc

    def get(self, name: str) -> np.ndarray:
        if name not in self._entries:
            raise TensorIOError(f"{self.path}: no tensor {name!r}; the file holds {sorted(self._entries)}")
        try:
            arr = self._handle.get_tensor(name)
        except Exception as exc:
            raise TensorIOError(f"{self.path}: could not read tensor {name!r} ({exc})") from exc
        return arr.reshape(self.tensors[name][0])

    def close(self) -> None:
        self._handle = None

    def __enter__(self) -> "FileReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def load_file(path: PathLike, verify: bool = True) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Read a container written by :func:`save_file`: returns (arrays, metadata).

    With ``verify`` (default) the sha256 (tensor table, metadata and data) is checked first.
    """
    with FileReader(path, verify=verify) as reader:
        arrays = {name: reader.get(name) for name in reader.tensors}
        return arrays, reader.metadata


def check_arrays(
    arrays: Mapping[str, np.ndarray],
    expected: Mapping[str, Tuple[Tuple[int, ...], Any]],
    where: str,
    allow_extra: bool = False,
) -> None:
    """Raise :class:`TensorIOError` naming the first missing, mis-shaped or mis-typed tensor.

    ``expected`` maps tensor name -> (shape, dtype); a ``-1`` in a shape matches any size.
    """
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise TensorIOError(f"{where}: missing tensor(s) {missing}; the file holds {sorted(arrays)}")
    if not allow_extra:
        extra = sorted(set(arrays) - set(expected))
        if extra:
            raise TensorIOError(f"{where}: unexpected tensor(s) {extra}; is this the right file?")
    for name, (shape, dtype) in expected.items():
        arr = arrays[name]
        ok_shape = len(arr.shape) == len(shape) and all(
            s == -1 or s == a for s, a in zip(shape, arr.shape)
        )
        if not ok_shape:
            raise TensorIOError(
                f"{where}: tensor {name!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}"
            )
        if dtype is not None and arr.dtype != np.dtype(dtype):
            raise TensorIOError(
                f"{where}: tensor {name!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}"
            )
