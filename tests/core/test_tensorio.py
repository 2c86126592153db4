"""tensorio: safetensors containers with JSON metadata, checksum and atomic writes."""

import json
import os
import struct

import numpy as np
import pytest
from safetensors import safe_open

from hilserl_core import tensorio
from hilserl_core.tensorio import TensorIOError


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
