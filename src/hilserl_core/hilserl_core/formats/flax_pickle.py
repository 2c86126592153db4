"""Read a pickled flax parameter tree without unpickling it.

The published HIL-SERL / SERL ResNet-10 ImageNet weights (``resnet10_params.pkl``, the
``resnet10`` release of rail-berkeley/serl, loaded by ``serl_launcher/utils/train_utils.py``
``load_resnet10_params`` with ``pickle.load``) are a pickled flax parameter tree: nested
mappings keyed by flax module names (``conv_init``, ``norm_init``, ``ResNetBlock_0`` ..
``ResNetBlock_3`` with ``Conv_0``, ``MyGroupNorm_0``, ``Conv_1``, ``MyGroupNorm_1``,
``conv_proj``, ``norm_proj``) whose leaves are ``kernel`` / ``scale`` / ``bias`` arrays.
Depending on what wrote it, a mapping is a ``dict``, a ``collections.OrderedDict`` or a
flax ``FrozenDict`` (``FrozenDict.__reduce__`` is ``(FrozenDict, (plain_dict,))``), and a leaf
is a numpy array (``numpy.core.multiarray._reconstruct`` + BUILD with the raw bytes, or
``numpy.core.numeric._frombuffer`` at protocol 5; ``numpy._core`` under numpy 2) or a jax
array (``jax._src.array._reconstruct_array(fun, args, arr_state, aval_state)``, which wraps
the numpy form).

``pickle.load`` on such a file runs whatever callables the file names. This reader never
does: it walks the opcodes with :func:`pickletools.genops` and interprets a data-only
subset itself. Containers, strings, bytes, numbers and memo operations are built as plain
Python data; a global is admitted only if it is on :data:`ALLOWED_GLOBALS`, and even then
it is never imported or called: REDUCE and BUILD of an admitted global are emulated here
(an array from its dtype, shape and bytes; a mapping as a ``dict``). Every other global,
opcode or argument is refused with :class:`UnsafePickleError` naming it and its byte
offset, before anything else of the file is looked at. Truncated or corrupt files are
:class:`UnsafePickleError` too, never another exception.
"""

from __future__ import annotations

import pickletools
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

# (module, name) as a pickle names it -> what this reader makes of it (never the real object)
ALLOWED_GLOBALS: Dict[Tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): "ndarray_reconstruct",  # numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): "ndarray_reconstruct",  # numpy 2.x
    ("numpy", "ndarray"): "ndarray_type",
    ("numpy", "dtype"): "dtype",
    ("numpy.core.multiarray", "scalar"): "scalar",
    ("numpy._core.multiarray", "scalar"): "scalar",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",  # protocol 5 arrays
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("jax._src.array", "_reconstruct_array"): "jax_array",  # jax.Array.__reduce__
    ("jax._src.device_array", "reconstruct_device_array"): "jax_array",  # older jax DeviceArray
    ("flax.core.frozen_dict", "FrozenDict"): "mapping",
    ("collections", "OrderedDict"): "mapping",
    ("_codecs", "encode"): "codecs_encode",  # bytes at protocols 0-2
    ("builtins", "bytearray"): "bytearray",
    ("__builtin__", "bytearray"): "bytearray",  # protocols 0-2 name builtins so
    ("builtins", "bytes"): "bytearray",  # empty bytes at protocols 0-2: bytes()
    ("__builtin__", "bytes"): "bytearray",
    ("builtins", "set"): "set",  # sets at protocols 0-3: set(list)
    ("__builtin__", "set"): "set",
    ("builtins", "frozenset"): "frozenset",
    ("__builtin__", "frozenset"): "frozenset",
}

# numeric dtypes only (no objects, no structured or void types): kind + item size
_DTYPE_CODE = re.compile(r"[biufc][0-9]{1,2}")
_BYTE_ORDERS = {"<", ">", "|", "="}
MAX_DEPTH = 32  # nesting of the returned tree


class UnsafePickleError(ValueError):
    """The pickle holds something other than arrays and containers, or is truncated or corrupt."""


class _Global:
    """An admitted global, as a marker: what it stands for, never the object itself."""

    __slots__ = ("module", "name", "kind", "offset")

    def __init__(self, module: str, name: str, kind: str, offset: int):
        self.module, self.name, self.kind, self.offset = module, name, kind, offset

    def __repr__(self) -> str:
        return f"{self.module}.{self.name}"


class _PendingDtype:
    """``numpy.dtype(code, align, copy)`` awaiting its BUILD state (the byte order)."""

    __slots__ = ("code", "dtype", "built")

    def __init__(self, code: str):
        self.code = code
        self.dtype = np.dtype(code)  # a plain numeric type code: no code runs
        self.built: Optional[np.dtype] = None  # after BUILD (the memo may still hold this object)


class _PendingArray:
    """``_reconstruct(ndarray, (0,), b'b')`` awaiting its BUILD state (shape, dtype, bytes)."""

    __slots__ = ("built",)

    def __init__(self) -> None:
        self.built: Optional[np.ndarray] = None  # after BUILD (the memo may still hold this object)


def _fail(where: str, offset: int, text: str) -> UnsafePickleError:
    return UnsafePickleError(f"{where}: {text} (byte offset {offset}); refused, nothing was executed")


def _as_dtype(value: Any, where: str, offset: int) -> np.dtype:
    if isinstance(value, _PendingDtype):
        return value.built if value.built is not None else value.dtype
    if isinstance(value, np.dtype):
        return value
    raise _fail(where, offset, f"expected a numpy dtype, got {type(value).__name__}")


def _make_dtype(args: Any, where: str, offset: int) -> _PendingDtype:
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        raise _fail(where, offset, f"numpy.dtype with arguments {_short(args)}")
    if not _DTYPE_CODE.fullmatch(args[0]):
        raise _fail(where, offset, f"numpy.dtype {args[0]!r} is not a plain numeric type")
    try:
        return _PendingDtype(args[0])
    except TypeError as exc:
        raise _fail(where, offset, f"numpy.dtype {args[0]!r}: {exc}") from None


def _build_dtype(pending: _PendingDtype, state: Any, where: str, offset: int) -> np.dtype:
    # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
    if not isinstance(state, tuple) or len(state) < 5 or state[1] not in _BYTE_ORDERS:
        raise _fail(where, offset, f"numpy dtype state {_short(state)}")
    if any(part is not None for part in state[2:5]):
        raise _fail(where, offset, "structured or sub-array numpy dtypes are not admitted")
    order = state[1]
    return pending.dtype.newbyteorder(order) if order in "<>" else pending.dtype


def _latin1(text: str, where: str, offset: int) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise _fail(where, offset, "byte data as text holds characters beyond latin-1") from None


def _raw_bytes(value: Any, where: str, offset: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):  # Python 2 str data read as text (protocols 0-2)
        return _latin1(value, where, offset)
    raise _fail(where, offset, f"array data is a {type(value).__name__}, not bytes")


def _shape(value: Any, where: str, offset: int) -> Tuple[int, ...]:
    if not isinstance(value, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise _fail(where, offset, f"array shape {_short(value)}")
    return value


def _array(raw: Any, dtype: np.dtype, shape: Tuple[int, ...], fortran: bool, where: str, offset: int) -> np.ndarray:
    data = _raw_bytes(raw, where, offset)
    count = 1
    for dim in shape:
        count *= dim
    if count * dtype.itemsize != len(data):
        raise _fail(where, offset, f"array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} "
                                   f"bytes, the file holds {len(data)}")
    flat = np.frombuffer(data, dtype=dtype, count=count).copy()
    return flat.reshape(shape, order="F" if fortran else "C")


def _build_array(state: Any, where: str, offset: int) -> np.ndarray:
    # ndarray.__setstate__: (version, shape, dtype, is_fortran, rawdata) or without version
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise _fail(where, offset, f"numpy array state {_short(state)}")
    shape, dtype, fortran, raw = state
    return _array(raw, _as_dtype(dtype, where, offset), _shape(shape, where, offset), bool(fortran), where, offset)


def _new_array(args: Any, where: str, offset: int) -> _PendingArray:
    if not (isinstance(args, tuple) and len(args) == 3 and isinstance(args[0], _Global) and args[0].kind == "ndarray_type"):
        raise _fail(where, offset, f"numpy _reconstruct of {_short(args)}: only numpy.ndarray is admitted")
    return _PendingArray()


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hashable(key: Any, where: str, offset: int) -> Any:
    if isinstance(key, (str, int, float, bytes, bool, type(None))) or (
        isinstance(key, tuple) and all(isinstance(k, (str, int, float, bytes, bool)) for k in key)
    ):
        return key
    raise _fail(where, offset, f"mapping key of type {type(key).__name__}")


def _reduce(func: Any, args: Any, where: str, offset: int) -> Any:
    """Emulate ``func(*args)`` for an admitted global, as data."""
    if not isinstance(func, _Global):
        raise _fail(where, offset, f"REDUCE of a {type(func).__name__}, not of an admitted global")
    if not isinstance(args, tuple):
        raise _fail(where, offset, f"REDUCE of {func} with {type(args).__name__} arguments")
    kind = func.kind
    if kind == "ndarray_reconstruct":
        return _new_array(args, where, offset)
    if kind == "dtype":
        return _make_dtype(args, where, offset)
    if kind == "scalar":
        if len(args) != 2:
            raise _fail(where, offset, f"numpy scalar with arguments {_short(args)}")
        dtype = _as_dtype(args[0], where, offset)
        return _array(args[1], dtype, (), False, where, offset)[()]
    if kind == "frombuffer":  # numpy _frombuffer(buffer, dtype, shape, order)
        if len(args) != 4 or args[3] not in ("C", "F"):
            raise _fail(where, offset, f"numpy _frombuffer with arguments {_short(args)}")
        return _array(args[0], _as_dtype(args[1], where, offset), _shape(args[2], where, offset), args[3] == "F",
                      where, offset)
    if kind == "jax_array":  # _reconstruct_array(fun, args, arr_state, aval_state)
        if len(args) != 4 or not isinstance(args[3], dict):
            raise _fail(where, offset, f"jax array with arguments {_short(args)}")
        inner = _reduce(args[0], args[1], where, offset)
        if not isinstance(inner, _PendingArray):
            raise _fail(where, offset, f"jax array built by {args[0]}, not by numpy _reconstruct")
        return _build_array(args[2], where, offset)
    if kind == "mapping":  # FrozenDict(dict) / OrderedDict() / OrderedDict(pairs)
        if not args:
            return {}
        if len(args) == 1 and isinstance(args[0], dict):
            return dict(args[0])
        if len(args) == 1 and isinstance(args[0], list) and all(isinstance(p, tuple) and len(p) == 2 for p in args[0]):
            return {_hashable(k, where, offset): v for k, v in args[0]}
        raise _fail(where, offset, f"{func} with arguments {_short(args)}")
    if kind == "codecs_encode":  # _codecs.encode(text, 'latin1'): bytes at protocols 0-2
        if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return _latin1(args[0], where, offset)
        raise _fail(where, offset, f"_codecs.encode with arguments {_short(args)}")
    if kind == "bytearray":  # bytes(...) / bytearray(...): their bytes
        if not args:
            return b""
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return bytes(args[0])
        if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return _latin1(args[0], where, offset)
        raise _fail(where, offset, f"bytearray with arguments {_short(args)}")
    if kind in ("set", "frozenset"):
        if not args or (len(args) == 1 and isinstance(args[0], list)):
            items = {_hashable(v, where, offset) for v in (args[0] if args else [])}
            return set(items) if kind == "set" else frozenset(items)
        raise _fail(where, offset, f"{func} with arguments {_short(args)}")
    raise _fail(where, offset, f"REDUCE of {func} is not admitted")


def _ops(data: bytes, where: str) -> Iterator[Tuple[str, Any, int]]:
    """``pickletools.genops`` with its errors (truncation, unknown opcodes) as UnsafePickleError."""
    it = pickletools.genops(data)
    last = 0
    while True:
        try:
            op, arg, pos = next(it)
        except StopIteration:
            raise UnsafePickleError(f"{where}: the pickle ends without STOP after byte offset {last}: "
                                    "truncated or not a pickle") from None
        except Exception as exc:  # noqa: BLE001 -- genops' own parse errors (it runs nothing): truncation, bad opcodes
            raise UnsafePickleError(f"{where}: truncated or corrupt pickle after byte offset {last}: {exc}") from None
        last = pos if pos is not None else last
        yield op.name, arg, last
        if op.name == "STOP":
            return


def loads_tree(data: bytes, where: str = "<pickle>") -> Tuple[Any, List[str]]:
    """Interpret the pickle ``data`` as plain data.

    Returns (the object, the admitted globals it named as ``module.name``). Mappings come
    back as ``dict``, arrays as numpy arrays, tuples and lists as they are.
    Raises :class:`UnsafePickleError` for anything else, naming it and its byte offset.
    """
    data = bytes(data)
    if not data:
        raise UnsafePickleError(f"{where}: empty file, not a pickle")
    stack: List[Any] = []
    marks: List[int] = []
    memo: Dict[int, Any] = {}
    seen: List[str] = []

    def pop_mark(offset: int, op: str) -> List[Any]:
        if not marks:
            raise _fail(where, offset, f"{op} without MARK")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def pop(offset: int, op: str) -> Any:
        if len(stack) <= (marks[-1] if marks else 0):
            raise _fail(where, offset, f"{op} on an empty stack")
        return stack.pop()

    def top(offset: int, op: str) -> Any:
        if len(stack) <= (marks[-1] if marks else 0):
            raise _fail(where, offset, f"{op} on an empty stack")
        return stack[-1]

    def admit(module: Any, name: Any, offset: int) -> _Global:
        if not isinstance(module, str) or not isinstance(name, str):
            raise _fail(where, offset, f"global named by {type(module).__name__}/{type(name).__name__}")
        kind = ALLOWED_GLOBALS.get((module, name))
        if kind is None:
            raise _fail(where, offset, f"global {module}.{name} is not an array or container type")
        if f"{module}.{name}" not in seen:
            seen.append(f"{module}.{name}")
        return _Global(module, name, kind, offset)

    result: Any = None
    for op, arg, pos in _ops(data, where):
        if op in ("PROTO", "FRAME"):
            continue
        if op == "STOP":
            if len(stack) != 1 or marks:
                raise _fail(where, pos, f"STOP with {len(stack)} objects on the stack")
            result = stack.pop()
            if pos + 1 != len(data):
                raise _fail(where, pos + 1, f"{len(data) - pos - 1} bytes after the pickle's STOP")
            break
        if op == "MARK":
            marks.append(len(stack))
            continue
        if op in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[op])
        elif op in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"):
            stack.append(arg)
        elif op in ("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
            stack.append(arg)
        elif op == "BYTEARRAY8":
            stack.append(bytes(arg))
        elif op == "EMPTY_DICT":
            stack.append({})
        elif op == "EMPTY_LIST":
            stack.append([])
        elif op == "EMPTY_TUPLE":
            stack.append(())
        elif op in ("EMPTY_SET",):
            stack.append(set())
        elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(op[-1])
            items = [pop(pos, op) for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif op == "TUPLE":
            stack.append(tuple(pop_mark(pos, op)))
        elif op == "LIST":
            stack.append(list(pop_mark(pos, op)))
        elif op == "DICT":
            items = pop_mark(pos, op)
            if len(items) % 2:
                raise _fail(where, pos, "DICT with an odd number of items")
            stack.append({_hashable(items[i], where, pos): items[i + 1] for i in range(0, len(items), 2)})
        elif op == "FROZENSET":
            stack.append(frozenset(_hashable(v, where, pos) for v in pop_mark(pos, op)))
        elif op in ("APPEND", "APPENDS"):
            items = [pop(pos, op)] if op == "APPEND" else pop_mark(pos, op)
            target = top(pos, op)
            if not isinstance(target, list):
                raise _fail(where, pos, f"{op} to a {type(target).__name__}")
            target.extend(items)
        elif op == "ADDITEMS":
            items = pop_mark(pos, op)
            target = top(pos, op)
            if not isinstance(target, set):
                raise _fail(where, pos, f"ADDITEMS to a {type(target).__name__}")
            target.update(_hashable(v, where, pos) for v in items)
        elif op in ("SETITEM", "SETITEMS"):
            if op == "SETITEM":
                value = pop(pos, op)
                items = [pop(pos, op), value]
            else:
                items = pop_mark(pos, op)
            if len(items) % 2:
                raise _fail(where, pos, "SETITEMS with an odd number of items")
            target = top(pos, op)
            if not isinstance(target, dict):
                raise _fail(where, pos, f"{op} on a {type(target).__name__}")
            for i in range(0, len(items), 2):
                target[_hashable(items[i], where, pos)] = items[i + 1]
        elif op == "POP":
            if marks and len(stack) == marks[-1]:  # POP of a MARK drops the mark
                pop_mark(pos, op)
            else:
                pop(pos, op)
        elif op == "POP_MARK":
            pop_mark(pos, op)
        elif op == "DUP":
            stack.append(top(pos, op))
        elif op in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = top(pos, op)
        elif op == "MEMOIZE":
            memo[len(memo)] = top(pos, op)
        elif op in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise _fail(where, pos, f"memo entry {arg} read before it was written")
            value = memo[arg]
            if isinstance(value, (_PendingArray, _PendingDtype)) and value.built is not None:
                value = value.built  # BUILD completed it after it was memoised (pickle builds in place)
            stack.append(value)
        elif op == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            stack.append(admit(module, name, pos))
        elif op == "STACK_GLOBAL":
            name = pop(pos, op)
            module = pop(pos, op)
            stack.append(admit(module, name, pos))
        elif op == "REDUCE":
            args = pop(pos, op)
            func = pop(pos, op)
            stack.append(_reduce(func, args, where, pos))
        elif op == "BUILD":
            state = pop(pos, op)
            target = pop(pos, op)
            if isinstance(target, _PendingArray) and target.built is None:
                target.built = _build_array(state, where, pos)
                stack.append(target.built)
            elif isinstance(target, _PendingDtype) and target.built is None:
                target.built = _build_dtype(target, state, where, pos)
                stack.append(target.built)
            else:
                raise _fail(where, pos, f"BUILD of a {type(target).__name__}: only numpy arrays and dtypes are built")
        else:  # INST, OBJ, NEWOBJ, NEWOBJ_EX, PERSID, BINPERSID, EXT*, NEXT_BUFFER, READONLY_BUFFER, ...
            named = f" {str(arg).replace(' ', '.')}" if isinstance(arg, str) else ""  # INST names a global
            raise _fail(where, pos, f"opcode {op}{named} is not admitted (only arrays and containers are)")
    return result, seen


def flatten_tree(tree: Any, where: str = "<pickle>") -> Dict[str, np.ndarray]:
    """Nested mappings of arrays -> ``{"a/b/kernel": array}`` (the ``flatten_dict(sep="/")`` form).

    Raises :class:`UnsafePickleError` for a leaf that is not an array or a non-string key."""
    if not isinstance(tree, dict):
        raise UnsafePickleError(f"{where}: holds a {type(tree).__name__}, not a flax parameter tree (a mapping)")
    flat: Dict[str, np.ndarray] = {}

    def walk(node: Mapping[Any, Any], prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise UnsafePickleError(f"{where}: parameter tree nested deeper than {MAX_DEPTH} at {prefix!r}")
        for key, value in node.items():
            if not isinstance(key, str):
                raise UnsafePickleError(f"{where}: key {key!r} under {prefix or '/'!r} is not a string")
            path = prefix + key
            if isinstance(value, _PendingArray) and value.built is not None:  # put in before its BUILD
                value = value.built
            if isinstance(value, dict):
                walk(value, path + "/", depth + 1)
            elif isinstance(value, (np.ndarray, np.generic)):
                flat[path] = np.asarray(value)
            else:
                raise UnsafePickleError(f"{where}: {path!r} is a {type(value).__name__}, not an array")

    walk(tree, "", 0)
    return flat


def read_flax_params(path: Union[str, Path]) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """The flattened parameter tree of a pickled flax parameter file, read without unpickling.

    Returns (``{"/"-joined flax path: array}``, admitted globals the file named)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnsafePickleError(f"{path}: {exc.strerror or exc}") from None
    tree, seen = loads_tree(data, str(path))
    return flatten_tree(tree, str(path)), seen
