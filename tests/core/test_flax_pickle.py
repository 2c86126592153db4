"""The published ResNet-10 weights (resnet10_params.pkl) read without unpickling and converted
for encoder_weights:=, and pickles that are not plain arrays and containers refused.

The files here are laid out like the published one: a pickled flax parameter tree whose
top-level keys are the resnetv1-10 module names (conv_init, norm_init, ResNetBlock_0..3; what
SERL's load_resnet10_params copies into its pretrained_encoder), leaves numpy or jax arrays,
mappings dicts or flax FrozenDicts. Neither flax nor jax is installed here, so stand-ins that
pickle exactly as they do (the same globals, the same REDUCE arguments) are put in
sys.modules for the writing only.

This file imports pickle to WRITE such files (pickle.dumps); it never loads one
(tests/test_workspace.py allows exactly that).
"""

import os
import pickle  # writing test files only: never pickle.load/loads (tests/test_workspace.py checks)
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch

from hilserl.cli import main as hilserl_main
from hilserl_core.formats import tensorio
from hilserl_core.formats.flax_pickle import UnsafePickleError, loads_tree, read_flax_params
from hilserl_core.vision import encoders
from hilserl_core.vision.encoders import ResNet10Encoder, load_frozen_encoder
from hilserl_core.vision.published_weights import ConversionError, convert_published


# ------------------------------------------------ stand-ins that pickle as flax and jax do
class FrozenDict(dict):
    """Pickles as flax.core.frozen_dict.FrozenDict: ``(FrozenDict, (self.unfreeze(),))``."""

    def __reduce__(self):
        return FrozenDict, (dict(self),)


def _reconstruct_array(fun, args, arr_state, aval_state):  # jax._src.array._reconstruct_array
    raise AssertionError("the reader must never call a pickled global")


class JaxArray:
    """Pickles as a jax.Array: ``(_reconstruct_array, (*numpy __reduce__, aval_state))``."""

    def __init__(self, value):
        self._value = np.asarray(value)

    def __reduce__(self):
        fun, args, arr_state = self._value.__reduce__()
        return _reconstruct_array, (fun, args, arr_state, {"weak_type": False})


@pytest.fixture
def flax_jax_modules(monkeypatch):
    """Make pickle.dumps name the stand-ins by their flax/jax globals."""
    for name, attrs in {
        "flax": {}, "flax.core": {}, "flax.core.frozen_dict": {"FrozenDict": FrozenDict},
        "jax": {}, "jax._src": {}, "jax._src.array": {"_reconstruct_array": _reconstruct_array},
    }.items():
        module = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(module, key, value)
            value.__module__ = name
        monkeypatch.setitem(sys.modules, name, module)
    yield
    FrozenDict.__module__ = _reconstruct_array.__module__ = __name__


def _published_tree(encoder, leaf=np.asarray, mapping=dict):
    """The encoder's weights as the published flax tree: {module: {param: HWIO kernel / vector}}."""
    state = {k: v.float().numpy() for k, v in encoder.state_dict().items()}
    tree = {}
    for torch_name, (flax_name, kind) in encoders._flax_to_torch_names().items():
        value = state[torch_name]
        *modules, param = flax_name.split("/")
        node = tree
        for m in modules:
            node = node.setdefault(m, {})
        node[param] = leaf(np.ascontiguousarray(value.transpose(2, 3, 1, 0)) if kind == "conv" else value)
    return mapping(tree)


@pytest.fixture(scope="module")
def source():
    return ResNet10Encoder(seed=11, compute_dtype="float32")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).integers(0, 256, size=(2, 128, 128, 3), dtype=np.uint8)


def _same_output(path, source, images):
    loaded = load_frozen_encoder(str(path), "float32")  # the loader actor, learner and reward node use
    assert loaded.identity()["weights"] == source.identity()["weights"]
    x = torch.from_numpy(images)
    assert torch.equal(loaded(x), source(x))


# --------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("layout", ["numpy-p4", "numpy-p5", "numpy-p2", "numpy1-p3", "flax-jax-p4", "flax-jax-p3",
                                    "ordered-params-p4"])
def test_published_layouts_convert_to_the_same_encoder(layout, tmp_path, source, images, flax_jax_modules):
    protocol = int(layout[-1])
    if layout.startswith("flax-jax"):  # FrozenDict at the top (its unfreeze() is plain dicts), jax arrays
        tree = _published_tree(source, leaf=JaxArray, mapping=FrozenDict)
    elif layout.startswith("ordered-params"):  # a whole flax variables dict: {"params": OrderedDict(...)}
        tree = {"params": _published_tree(source, mapping=OrderedDict)}
    else:
        tree = _published_tree(source)
    tree["Dense_0"] = {"kernel": np.zeros((512, 1000), np.float32)}  # an ImageNet head: ignored, listed
    data = pickle.dumps(tree, protocol=protocol)
    if layout.startswith("numpy1"):  # numpy 1.x names its reconstructor numpy.core.multiarray
        assert b"cnumpy._core.multiarray\n" in data
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    (tmp_path / "resnet10_params.pkl").write_bytes(data)

    summary = convert_published(tmp_path / "resnet10_params.pkl", tmp_path / "resnet10.safetensors")
    assert summary.tensors == 36 and summary.parameters == 4_905_792
    assert summary.ignored == ["Dense_0/kernel"]
    if layout.startswith("flax-jax"):
        assert {"flax.core.frozen_dict.FrozenDict", "jax._src.array._reconstruct_array"} <= set(summary.globals_seen)
    if layout.startswith("numpy1"):
        assert "numpy.core.multiarray._reconstruct" in summary.globals_seen
    meta = tensorio.read_metadata(tmp_path / "resnet10.safetensors")
    assert meta["kind"] == encoders.WEIGHTS_KIND and meta["weights"] == source.identity()["weights"]
    _same_output(tmp_path / "resnet10.safetensors", source, images)


def test_cli_prints_a_summary_and_the_file_loads_as_encoder_weights(tmp_path, source, images, capsys, flax_jax_modules):
    pkl = tmp_path / "resnet10_params.pkl"
    pkl.write_bytes(pickle.dumps(_published_tree(source, leaf=JaxArray, mapping=FrozenDict), protocol=4))
    out = tmp_path / "w" / "resnet10.safetensors"
    out.parent.mkdir()
    assert hilserl_main(["convert-weights", str(pkl), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "36 tensors" in text and "4,905,792 parameters" in text
    assert source.identity()["weights"] in text and f"encoder_weights:={out.resolve()}" in text
    assert "flax.core.frozen_dict.FrozenDict" in text
    _same_output(out, source, images)
    assert [p.name for p in out.parent.iterdir()] == ["resnet10.safetensors"]  # atomic: no temporary left

    assert hilserl_main(["convert-weights", str(pkl), "-o", str(out)]) == 2  # no silent overwrite
    assert "exists" in capsys.readouterr().err
    assert hilserl_main(["convert-weights", str(pkl), "-o", str(out), "--force"]) == 0


# ------------------------------------------------------------------- refused files
class _SystemCall:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _refused(tmp_path, data, capsys, *needles):
    pkl, out = tmp_path / "resnet10_params.pkl", tmp_path / "out.safetensors"
    pkl.write_bytes(data)
    with pytest.raises(UnsafePickleError) as info:
        read_flax_params(pkl)
    for needle in needles:
        assert needle in str(info.value)
    assert hilserl_main(["convert-weights", str(pkl), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and all(needle in err for needle in needles)
    assert not out.exists()
    return str(info.value)


def test_a_pickle_that_would_run_a_command_is_refused_and_runs_nothing(tmp_path, source, capsys):
    marker = tmp_path / "pwned"
    tree = _published_tree(source)
    tree["ResNetBlock_1"]["Conv_0"]["kernel"] = _SystemCall(f"touch {marker}")
    for protocol in (0, 2, 4, 5):
        msg = _refused(tmp_path, pickle.dumps(tree, protocol=protocol), capsys, "posix.system", "byte offset")
        assert "nothing was executed" in msg
    assert not marker.exists()


def _eval_p0(marker):  # protocol 0: builtins.eval("open(marker, 'w')")
    return b"cbuiltins\neval\n(V" + f"open({marker!r}, 'w')".encode() + b"\ntR."


def _open_p4(marker):  # protocol 4: STACK_GLOBAL builtins.open, REDUCE (marker, 'w')
    m = marker.encode()
    return b"\x80\x04\x8c\x08builtins\x8c\x04open\x93\x8c" + bytes([len(m)]) + m + b"\x8c\x01w\x86R."


def _inst_p0(marker):  # INST names its global in its argument: os.system("touch marker")
    return b"(S" + repr(f"touch {marker}").encode() + b"\nios\nsystem\n."


@pytest.mark.parametrize("make, needle", [(_eval_p0, "builtins.eval"), (_open_p4, "builtins.open"),
                                          (_inst_p0, "os.system")])
def test_code_running_globals_are_refused_by_name(tmp_path, capsys, make, needle):
    marker = str(tmp_path / "marker")  # each of these would create it if unpickled
    _refused(tmp_path, make(marker), capsys, needle, "byte offset")
    assert not os.path.exists(marker)


@pytest.mark.parametrize("data, needle", [
    (b"\x80\x02cnumpy\nndarray\n)R.", "REDUCE of numpy.ndarray is not admitted"),  # allowed name, not callable here
    (b"\x80\x02X\x04\x00\x00\x00evil)R.", "REDUCE of a str"),  # REDUCE of something that is not a global
    (b"\x80\x02}}b.", "BUILD of a dict"),  # BUILD would call __setstate__/setattr
    (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.", "not a plain numeric type"),  # object arrays
    (b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncbuiltins\nobject\n)C\x01b\x87R.", "builtins.object"),
    (b"\x80\x02K\x01Q.", "opcode BINPERSID"),  # persistent ids would call a loader's hook
])
def test_admitted_globals_only_build_data(tmp_path, capsys, data, needle):
    _refused(tmp_path, data, capsys, needle)


def test_truncated_and_trailing_bytes_are_refused(tmp_path, source, capsys):
    data = pickle.dumps(_published_tree(source), protocol=4)
    for cut in (0, 1, 2, 11, 200, len(data) // 2, len(data) - 1):
        _refused(tmp_path, data[:cut], capsys, "resnet10_params.pkl")
    assert "truncated" in _refused(tmp_path, data[: len(data) // 2], capsys)
    _refused(tmp_path, data + b"\x00junk", capsys, "after the pickle's STOP")


def test_array_bytes_must_match_shape_and_dtype(tmp_path, capsys):
    # ndarray state claiming 4 float32 values over 8 bytes of data
    data = pickle.dumps({"x": np.zeros(2, np.float32)}, protocol=2)
    data = data.replace(b"K\x02\x85", b"K\x04\x85", 1)
    _refused(tmp_path, data, capsys, "needs 16 bytes, the file holds 8")


# ----------------------------------------------------------------- wrong contents
def _convert(tmp_path, tree):
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(tree, protocol=4))
    return convert_published(tmp_path / "p.pkl", tmp_path / "out.safetensors")


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t["ResNetBlock_2"]["Conv_0"].update(kernel=np.zeros((3, 3, 128, 255), np.float32)),
     "ResNetBlock_2/Conv_0/kernel has shape (3, 3, 128, 255), the architecture needs (3, 3, 128, 256)"),
    (lambda t: t["conv_init"].update(kernel=np.zeros((64, 3, 7, 7), np.float32)),  # torch layout, not flax HWIO
     "conv_init/kernel has shape (64, 3, 7, 7), the architecture needs (7, 7, 3, 64)"),
    (lambda t: t["norm_init"].update(scale=np.zeros((64, 1), np.float32)), "norm_init/scale has shape (64, 1)"),
    (lambda t: t["ResNetBlock_3"].pop("conv_proj"), "missing ResNetBlock_3/conv_proj/kernel (1, 1, 256, 512)"),
    (lambda t: t["ResNetBlock_0"]["MyGroupNorm_1"].update(bias=np.full(64, np.nan, np.float32)), "non-finite"),
    (lambda t: t["ResNetBlock_0"]["MyGroupNorm_1"].update(bias=np.zeros(64, np.int32)), "not floating point"),
])
def test_tensors_are_checked_against_the_architecture(tmp_path, source, capsys, edit, needle):
    tree = _published_tree(source)
    edit(tree)
    with pytest.raises(ConversionError) as info:
        _convert(tmp_path, tree)
    assert needle in str(info.value)
    assert not (tmp_path / "out.safetensors").exists()
    assert hilserl_main(["convert-weights", str(tmp_path / "p.pkl"), "-o", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err
    assert not (tmp_path / "o.safetensors").exists()


def test_leaves_must_be_arrays(tmp_path, source):
    tree = _published_tree(source)
    tree["norm_init"]["scale"] = [1.0] * 64
    with pytest.raises(UnsafePickleError, match="'norm_init/scale' is a list, not an array"):
        _convert(tmp_path, tree)
    with pytest.raises(UnsafePickleError, match="holds a list, not a flax parameter tree"):
        _convert(tmp_path, [1, 2])


def test_reader_keeps_shared_and_memoised_objects_and_containers():
    shared = np.arange(6, dtype=np.float32).reshape(2, 3)
    tree = {"a": shared, "b": shared, "t": (1, 2.5, "x", None, True, b"\x00"), "l": [1, [2]], "s": {1, 2},
            "o": OrderedDict(z=np.float64(1.5)), "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "be": np.arange(3, dtype=">i4"), "e": np.zeros((0, 4), np.uint8)}
    for protocol in range(6):
        out, _ = loads_tree(pickle.dumps(tree, protocol=protocol))
        assert out["a"] is out["b"] and np.array_equal(out["a"], shared) and out["a"].dtype == np.float32
        assert out["t"] == tree["t"] and out["l"] == [1, [2]] and out["s"] == {1, 2}
        assert out["o"] == {"z": 1.5} and isinstance(out["o"]["z"], np.float64)
        assert np.array_equal(out["f"], tree["f"]) and np.array_equal(out["be"], tree["be"])
        assert out["be"].dtype == np.dtype(">i4") and out["e"].shape == (0, 4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pickletools on a corrupted STRING's escapes
def test_corrupted_files_fail_only_with_unsafe_pickle_error():
    """Random byte flips and cut-outs: the reader either returns data or raises UnsafePickleError."""
    import random

    rng = random.Random(0)
    tree = {"conv_init": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}, "o": OrderedDict(x=np.float32(1)),
            "l": [1, (2, "x"), {3}], "be": np.ones(3, ">f8"), "z": b""}
    for protocol in range(6):
        data = pickle.dumps(tree, protocol=protocol)
        for _ in range(300):
            m = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                m[rng.randrange(len(m))] = rng.randrange(256)
            if rng.random() < 0.2:
                m = m[: rng.randrange(len(m))] + m[rng.randrange(len(m)):]
            try:
                loads_tree(bytes(m))
            except UnsafePickleError:
                pass
