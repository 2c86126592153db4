"""tensorio: safetensors containers with JSON metadata, checksum and atomic writes."""

import json
import os
import struct

import numpy as np
import pytest
from safetensors import safe_open

from hilserl_core.formats import tensorio
from hilserl_core.formats.tensorio import TensorIOError


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8),
        "feature": rng.standard_normal((2, 5)).astype(np.float16),
        "proprio": rng.standard_normal((4, 7)).astype(np.float32),
        "flags": np.array([True, False, True]),
        "ids": np.arange(5, dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "scalar": np.array(3.5, dtype=np.float64),
    }


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k])


def test_bytes_round_trip_keeps_dtypes_shapes_values_and_metadata():
    meta = {"kind": "test", "cameras": ["wrist", "side"], "threshold": 0.5, "nested": {"a": 1}}
    data = tensorio.to_bytes(_arrays(), meta)
    arrays, meta2 = tensorio.from_bytes(data)
    _assert_same(_arrays(), arrays)
    assert meta2 == meta


def test_file_round_trip_and_plain_safetensors_readers_understand_it(tmp_path):
    path = tensorio.save_file(tmp_path / "sub" / "x.safetensors", _arrays(), {"k": 1})
    arrays, meta = tensorio.load_file(path)
    _assert_same(_arrays(), arrays)
    assert meta == {"k": 1}
    assert tensorio.read_metadata(path) == {"k": 1}
    with safe_open(str(path), framework="numpy") as st:  # third-party reader
        np.testing.assert_array_equal(st.get_tensor("proprio"), _arrays()["proprio"])
        assert st.metadata()["hilserl.format_version"] == str(tensorio.FORMAT_VERSION)
    assert [p.name for p in path.parent.iterdir()] == ["x.safetensors"]  # no temp files left


def test_flipped_byte_in_data_is_detected(tmp_path):
    path = tensorio.save_file(tmp_path / "x.safetensors", _arrays(), {})
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(TensorIOError, match="checksum"):
        tensorio.load_file(path)
    with pytest.raises(TensorIOError, match="checksum"):
        tensorio.from_bytes(bytes(raw))


def test_tampered_metadata_is_detected():
    data = tensorio.to_bytes({"a": np.zeros(4, np.float32)}, {"threshold": 0.5})
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"]["hilserl.metadata"] = json.dumps({"threshold": 0.9})
    raw = json.dumps(header).encode()
    raw += b" " * ((-len(raw)) % 8)
    forged = struct.pack("<Q", len(raw)) + raw + data[8 + n :]
    with pytest.raises(TensorIOError, match="checksum"):
        tensorio.from_bytes(forged)


def test_truncated_file_is_rejected_with_file_name(tmp_path):
    path = tensorio.save_file(tmp_path / "x.safetensors", _arrays(), {})
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(TensorIOError, match="x.safetensors"):
        tensorio.load_file(path)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tensorio.save_file(tmp_path / "x.safetensors", {"a": np.ones(3, np.float32)}, {"v": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tensorio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        tensorio.save_file(path, {"a": np.zeros(3, np.float32)}, {"v": 2})
    arrays, meta = tensorio.load_file(path)
    assert meta == {"v": 1}
    np.testing.assert_array_equal(arrays["a"], np.ones(3, np.float32))
    assert sorted(os.listdir(tmp_path)) == ["x.safetensors"]


def test_refuses_unsupported_dtype_and_foreign_files(tmp_path):
    with pytest.raises(TensorIOError, match="dtype"):
        tensorio.to_bytes({"c": np.zeros(2, np.complex64)})
    from safetensors.numpy import save_file as plain_save

    plain_save({"a": np.zeros(2, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(TensorIOError, match="not a hilserl container"):
        tensorio.load_file(tmp_path / "plain.safetensors")
    with pytest.raises(TensorIOError, match="no such file"):
        tensorio.load_file(tmp_path / "missing.safetensors")


def test_check_arrays_names_the_offending_tensor():
    arrays = {"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.uint8)}
    tensorio.check_arrays(arrays, {"a": ((-1, 3), np.float32), "b": ((4,), np.uint8)}, "f")
    with pytest.raises(TensorIOError, match="missing.*'c'"):
        tensorio.check_arrays(arrays, {"a": ((2, 3), None), "c": ((1,), None)}, "f")
    with pytest.raises(TensorIOError, match="'a' has shape"):
        tensorio.check_arrays(arrays, {"a": ((2, 4), None), "b": ((4,), None)}, "f")
    with pytest.raises(TensorIOError, match="'b' has dtype"):
        tensorio.check_arrays(arrays, {"a": ((2, 3), None), "b": ((4,), np.float32)}, "f")
    with pytest.raises(TensorIOError, match="unexpected"):
        tensorio.check_arrays(arrays, {"a": ((2, 3), None)}, "f")


# -- malformed and old containers ------------------------------------------------------


def _raw(header, data=b""):
    """A length-prefixed safetensors blob with exactly this header (any JSON value) and data."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def _v1(entries, meta_json="{}", data=b"", **meta_extra):
    """A container signed by the version-1 rule (sha256 over metadata JSON + data only)."""
    import hashlib

    digest = hashlib.sha256(meta_json.encode())
    digest.update(data)
    header = dict(entries)
    header["__metadata__"] = {"hilserl.format_version": "1", "hilserl.metadata": meta_json,
                              "hilserl.sha256": digest.hexdigest(), **meta_extra}
    return _raw(header, data)


def _v1_of(arrays, metadata):
    """What tensorio version 1 wrote for these arrays (same layout, old checksum)."""
    entries, offset, data = {}, 0, b""
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        entries[name] = {"dtype": tensorio._DTYPE_TO_CODE[a.dtype], "shape": list(a.shape),
                         "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        data += a.tobytes()
    return _v1(entries, json.dumps(metadata, sort_keys=True), data)


def test_the_checksum_covers_tensor_names_dtypes_and_shapes():
    data = tensorio.to_bytes({"obs/wrist": np.array([-1, -2], np.int8), "m": np.zeros((2, 3), np.float32)}, {"k": 1})
    assert tensorio.from_bytes(data)[1] == {"k": 1}
    for old, new in [(b'"obs/wrist"', b'"obs/wrisu"'), (b'"I8"', b'"U8"'), (b'"shape":[2,3]', b'"shape":[3,2]')]:
        assert old in data
        with pytest.raises(TensorIOError, match="checksum"):
            tensorio.from_bytes(data.replace(old, new))


def test_version_1_containers_still_load_and_are_verified_by_the_old_rule(tmp_path):
    assert tensorio.FORMAT_VERSION == 2
    arrays = {k: v for k, v in _arrays().items() if k != "scalar"}
    blob = _v1_of(arrays, {"kind": "replay", "n": 3})
    got, meta = tensorio.from_bytes(blob)
    _assert_same(arrays, got)
    assert meta == {"kind": "replay", "n": 3}
    path = tmp_path / "old.safetensors"
    path.write_bytes(blob)
    got, meta = tensorio.load_file(path)
    _assert_same(arrays, got)
    assert tensorio.read_metadata(path) == meta == {"kind": "replay", "n": 3}
    with tensorio.FileReader(path) as reader:
        np.testing.assert_array_equal(reader.get("image"), arrays["image"])
    damaged = bytearray(blob)
    damaged[-3] ^= 0x01
    with pytest.raises(TensorIOError, match="checksum"):
        tensorio.from_bytes(bytes(damaged))
    # a version-1 payload with a version-2 checksum (or the reverse) does not verify
    v2 = tensorio.to_bytes(arrays, {"kind": "replay", "n": 3})
    with pytest.raises(TensorIOError, match="checksum"):
        tensorio.from_bytes(v2.replace(b'"hilserl.format_version":"2"', b'"hilserl.format_version":"1"'))


_GOOD_ENTRY = {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}


@pytest.mark.parametrize("blob, message", [
    (_raw([]), "header must be a JSON object, got list"),
    (_raw(5), "header must be a JSON object, got int"),
    (_raw(b"\xff\xfe{}"), "not UTF-8"),
    (_raw(b"{\"a\": "), "not valid JSON"),
    (struct.pack("<Q", 200008) + b"[" * 100004 + b"]" * 100004, "nested too deeply"),
    (_raw({"__metadata__": "hilserl.format_version hilserl.sha256"}), "'__metadata__' must be a JSON object of strings"),
    (_raw({"__metadata__": {"hilserl.format_version": [1], "hilserl.sha256": "x"}}), "JSON object of strings"),
    (_raw({"__metadata__": {"hilserl.format_version": "1", "hilserl.sha256": "x", "hilserl.metadata": 5}}), "JSON object of strings"),
    (_raw({"__metadata__": {"hilserl.format_version": "one", "hilserl.sha256": "0" * 64}}), "'one' is not a version number"),
    (_raw({"__metadata__": {"hilserl.format_version": "9", "hilserl.sha256": "0" * 64}}), "newer than this reader"),
    (_raw({"__metadata__": {"hilserl.format_version": "1", "hilserl.sha256": "x"}}), "64 lowercase hex"),
    (_v1({}, "[]"), "hilserl.metadata must be a JSON object, got list"),
    (_v1({}, "{\"a\": 1, \"a\": 2}"), "ambiguous"),
    (_v1({}, "[" * 100000 + "]" * 100000), "nested too deeply"),
    (_v1({"a": 5}, data=b"\0" * 4), "'a': its header entry must be a JSON object"),
    (_v1({"a": {"dtype": "U8", "shape": [4]}}, data=b"\0" * 4), "'a': header entry has keys"),
    (_v1({"a": {**_GOOD_ENTRY, "dtype": "C64", "data_offsets": [0, 32]}}, data=b"\0" * 32), "dtype 'C64'"),
    (_v1({"a": {**_GOOD_ENTRY, "dtype": 7}}, data=b"\0" * 4), "dtype 7"),
    (_v1({"a": {**_GOOD_ENTRY, "shape": 4}}, data=b"\0" * 4), "shape 4"),
    (_v1({"a": {**_GOOD_ENTRY, "shape": [-4]}}, data=b"\0" * 4), r"shape \[-4\]"),
    (_v1({"a": {**_GOOD_ENTRY, "shape": [4.0]}}, data=b"\0" * 4), r"shape \[4.0\]"),
    (_v1({"a": {**_GOOD_ENTRY, "shape": [True] * 4}}, data=b"\0" * 4), "non-negative integers"),
    (_v1({"a": {**_GOOD_ENTRY, "data_offsets": [-4, 0]}}, data=b"\0" * 4), r"data_offsets \[-4, 0\]"),
    (_v1({"a": {**_GOOD_ENTRY, "data_offsets": [0, 4, 8]}}, data=b"\0" * 4), "data_offsets"),
    (_v1({"a": {**_GOOD_ENTRY, "data_offsets": "0-4"}}, data=b"\0" * 4), "data_offsets"),
    (_v1({"a": {"dtype": "U8", "shape": [10**9], "data_offsets": [0, 10**9]}}, data=b"\0" * 4), "data section's size"),
    (_v1({"a": {"dtype": "F64", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}), "needs 147573952589676412928 bytes"),
    (_v1({"a": _GOOD_ENTRY, "b": _GOOD_ENTRY}, data=b"\0" * 8), "tensor 'b' starts at byte 0 of the data, expected 4"),
    (_v1({"a": _GOOD_ENTRY}, data=b"\0" * 8), "cover 4 bytes but the data section holds 8"),
    (_raw(b'{"a":' + json.dumps(_GOOD_ENTRY).encode() + b',"a":' + json.dumps(_GOOD_ENTRY).encode() + b"}", b"\0" * 4),
     "key 'a' appears twice"),
], ids=lambda v: v if isinstance(v, str) else "blob")
def test_malformed_headers_are_tensorio_errors_naming_the_problem(blob, message, tmp_path):
    with pytest.raises(TensorIOError, match=message):
        tensorio.from_bytes(blob)
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    for read in (tensorio.load_file, tensorio.read_metadata):
        with pytest.raises(TensorIOError, match="bad.safetensors"):
            read(path)


def test_the_wire_and_files_accept_the_same_dtypes(tmp_path):
    blob = _v1({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, data=b"\0" * 8)
    path = tmp_path / "c64.safetensors"
    path.write_bytes(blob)
    for read in (tensorio.from_bytes, lambda _: tensorio.load_file(path)):
        with pytest.raises(TensorIOError, match="dtype 'C64', which hilserl containers do not hold"):
            read(blob)


@pytest.mark.parametrize("n", [2**40, 2**63 + 5, 2**64 - 1])
def test_a_corrupt_length_prefix_in_a_file_names_the_file(n, tmp_path):
    path = tensorio.save_file(tmp_path / "x.safetensors", {"a": np.zeros(4, np.float32)}, {"m": 1})
    path.write_bytes(struct.pack("<Q", n) + path.read_bytes()[8:])
    for read in (tensorio.load_file, tensorio.read_metadata, tensorio.FileReader):
        with pytest.raises(TensorIOError, match=r"x\.safetensors: header length \d+ exceeds"):
            read(path)
    with pytest.raises(TensorIOError, match="header length"):
        tensorio.from_bytes(path.read_bytes())
