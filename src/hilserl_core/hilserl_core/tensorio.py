"""Named numpy arrays + JSON metadata in the safetensors format, without pickle.

One container format for everything hilserl keeps on disk or sends on the wire
(replay buffers, encoder weights, classifier heads, later policy weights). The
file is plain safetensors, so ``safetensors.safe_open`` and other tools read it;
hilserl adds three string entries to the safetensors ``__metadata__`` header:

- ``hilserl.format_version``: :data:`FORMAT_VERSION`; readers refuse newer files.
- ``hilserl.metadata``: the caller's metadata as one JSON document.
- ``hilserl.sha256``: hex sha256 over the JSON document's UTF-8 bytes followed by
  the whole tensor data section, so a truncated or bit-flipped payload is
  detected on load (:class:`TensorIOError` says which file).

Files are written atomically (temporary file in the same directory, fsync,
``os.replace``): a crash mid-save leaves the previous file intact and at worst a
stray ``*.tmp-<pid>`` file, never a half-written container under the real name.

The writer streams each array straight from its memory (no serialised copy of
the whole payload), which matters for multi-GB image replay buffers.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Dict, Mapping, Tuple, Union

import numpy as np

FORMAT_VERSION = 1

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


def _header(arrays: Dict[str, np.ndarray], metadata: Mapping[str, Any]) -> Tuple[bytes, str]:
    """Build the length-prefixed safetensors header; returns (header bytes, metadata JSON)."""
    meta_json = json.dumps(dict(metadata), sort_keys=True, allow_nan=True)
    digest = hashlib.sha256(meta_json.encode("utf-8"))
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


def _parse_header(head: bytes, where: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    try:
        entries = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TensorIOError(f"{where}: header is not valid JSON ({exc}); the file is corrupt") from exc
    meta = entries.pop("__metadata__", None) or {}
    if _KEY_VERSION not in meta or _KEY_SHA256 not in meta:
        raise TensorIOError(
            f"{where}: not a hilserl container (no {_KEY_VERSION!r}/{_KEY_SHA256!r} in the "
            "safetensors metadata); write it with hilserl_core.tensorio"
        )
    version = int(meta[_KEY_VERSION])
    if version > FORMAT_VERSION:
        raise TensorIOError(
            f"{where}: format version {version} is newer than this reader ({FORMAT_VERSION}); "
            "update hilserl"
        )
    return entries, meta


def _check_digest(digest: "hashlib._Hash", meta: Dict[str, str], where: str) -> Dict[str, Any]:
    if digest.hexdigest() != meta[_KEY_SHA256]:
        raise TensorIOError(
            f"{where}: sha256 checksum mismatch; the file is truncated or corrupt "
            "(restore it from a backup or re-create it)"
        )
    return json.loads(meta.get(_KEY_METADATA, "{}"))


def _restore_shapes(arrays: Mapping[str, np.ndarray], entries: Dict[str, Any]) -> Dict[str, np.ndarray]:
    # safetensors' numpy reader returns 0-d tensors as shape (1,); the header has the truth.
    return {k: v.reshape(entries[k]["shape"]) if k in entries else v for k, v in arrays.items()}


def from_bytes(data: bytes) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Inverse of :func:`to_bytes`: returns (arrays, metadata); verifies the checksum."""
    from safetensors.numpy import load

    where = "<bytes>"
    if len(data) < 8:
        raise TensorIOError(f"{where}: {len(data)} bytes is too short for a safetensors container")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise TensorIOError(f"{where}: header length {n} exceeds the {len(data)} bytes given")
    entries, meta = _parse_header(data[8 : 8 + n], where)
    digest = hashlib.sha256(meta.get(_KEY_METADATA, "{}").encode("utf-8"))
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prepared = _prepare(arrays)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            _write(f, prepared, metadata or {})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    return path


def read_metadata(path: PathLike) -> Dict[str, Any]:
    """The caller metadata of a container, without reading or verifying the tensors."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise TensorIOError(f"{path}: too short for a safetensors container")
        (n,) = struct.unpack("<Q", head)
        _, meta = _parse_header(f.read(n), str(path))
    return json.loads(meta.get(_KEY_METADATA, "{}"))


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
            header = f.read(n)
            if len(header) < n:
                raise TensorIOError(f"{where}: truncated inside the header")
            entries, meta = _parse_header(header, where)
            if verify:
                digest = hashlib.sha256(meta.get(_KEY_METADATA, "{}").encode("utf-8"))
                while True:
                    chunk = f.read(_HASH_CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                self.metadata = _check_digest(digest, meta, where)
            else:
                self.metadata = json.loads(meta.get(_KEY_METADATA, "{}"))
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

    With ``verify`` (default) the sha256 over metadata + data is checked first.
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
