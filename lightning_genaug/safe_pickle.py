"""Pickles read as data, never as code: the reader behind network pickles and CIFAR-10 batches.

:func:`pickle.load` calls whatever global a file names and sets the state of whatever object it
builds, so loading a file is running it. :class:`DataUnpickler` is pickle's own pure-Python
unpickler with every opcode that could act on more than data guarded:

- **Globals** come only from the caller's table of data constructors; any other is refused by name.
  A numpy array comes only from ``_reconstruct`` (an empty array) and ``BUILD`` (its data), so a
  pickle cannot ask for an array of any size it likes.
- **numpy dtypes** are plain numbers or strings only (kinds ``b i u f c S U``, from a spec such as
  ``'f4'``); object, void, structured and sub-array dtypes are refused wherever they appear. ``BUILD``
  never sets a dtype's state: the state a file gives must be the one the plain dtype already has
  (a forged state could otherwise make an object dtype look like raw bytes and turn file bytes into
  pointers).
- **BUILD** (``__setstate__`` / ``__dict__`` update) acts only on a numpy array the reader has itself
  just created for it, never on a function, class, module or allowed global;
  ``APPEND``/``SETITEM``/``ADDITEMS`` act only on lists, dicts and sets.
- **Hashing is bounded.** A dict key or set item must be a plain short value (:data:`KEY_TYPES`, or
  an int of at most 64 bits), wherever Python would hash it (``DICT``, ``SETITEM(S)``,
  ``ADDITEMS``, ``FROZENSET`` and calls of ``dict``/``set``/``frozenset``/``OrderedDict``), so a
  file cannot make Python hash a tuple nested 40 deep and shared through the memo (``2**40`` steps).
- **Copying is bounded.** Every call the file makes charges the lengths of its arguments (strings,
  bytes, containers) against the file's own size, so reusing one large value through the memo
  cannot make constructors copy more than the file holds.
- :func:`check_structure` walks what was built once (memoised), bounds its nesting by
  :data:`MAX_DEPTH` and refuses anything that is not data.

Every refusal is a ``pickle.UnpicklingError`` (or one of :data:`MALFORMED` for bytes that are not a
pickle) whose message describes the file's values by type and count only, never by formatting them
(a shared nested value would take exponential time to print); :func:`refusal_reason` also cuts any
message to :data:`MAX_REASON` characters. Callers turn it into one error naming their file.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray

# Deepest nesting of containers accepted. A reference network snapshot nests about 25 deep; a hostile
# chain thousands deep is refused before anything walks it.
MAX_DEPTH = 100
NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
# What a dict key or set item may be (plus ints of at most MAX_KEY_BITS bits): values whose hash costs
# O(1) once the file is read (str and bytes cache theirs) and whose collisions a file cannot choose in
# bulk (str and bytes hashes are keyed per process; an int of 64 bits has few equal-hash partners).
KEY_TYPES: tuple[type, ...] = (str, bytes, bool, float, type(None))
MAX_KEY_BITS = 64
# The numpy dtype kinds a file may hold (bool, integers, floats, complex, bytes, str): no object, void,
# structured or datetime dtypes. numpy pickles a dtype as ``dtype(spec)`` with a spec such as 'f4'.
DTYPE_KINDS = "biufcSU"
_DTYPE_SPEC = re.compile(rf"[{DTYPE_KINDS}][0-9]{{1,9}}")
# Longest refusal reason passed on, in characters (a reason from a library may quote data).
MAX_REASON = 500


class _ArrayClass:
    """Stands for ``numpy.ndarray`` where a pickle names it as ``_reconstruct``'s first argument.

    It cannot be called: an array comes only from ``_reconstruct`` (an empty array) plus ``BUILD``
    (its data).
    """


_ARRAY_CLASS = _ArrayClass()


def _check_dtype(dtype: Any) -> np.dtype:
    """``dtype`` if it is a plain numpy dtype (:data:`DTYPE_KINDS`, no fields), else a refusal."""
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError(f"a numpy value has a {type(dtype).__name__} as its dtype")
    if (
        dtype.kind not in DTYPE_KINDS
        or dtype.fields is not None
        or dtype.subdtype is not None
        or dtype.hasobject
    ):
        raise pickle.UnpicklingError(
            f"the pickle holds a numpy dtype of kind {dtype.kind!r} (object, void, structured or "
            f"datetime), which a data pickle never needs; only kinds {', '.join(DTYPE_KINDS)} are read"
        )
    return dtype


def _scalar(dtype: Any, data: Any = None) -> np.generic:
    """``numpy.core.multiarray.scalar``: a plain numpy scalar from exactly ``dtype.itemsize`` bytes."""
    dtype = _check_dtype(dtype)
    if isinstance(data, str):  # a Python 2 pickle's bytes, decoded as Latin-1
        data = data.encode("latin1")
    if type(data) is not bytes or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError(
            f"a numpy scalar of {dtype.itemsize} bytes is built from a {type(data).__name__}"
            + (f" of {len(data)} bytes" if type(data) is bytes else "")
        )
    return _multiarray.scalar(dtype, data)


# Globals naming numpy arrays and scalars. ``_reconstruct`` and ``dtype`` are bound per reader (see
# ``DataUnpickler``) because only their results may be set by BUILD or checked against it.
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _ARRAY_CLASS,
    **{(module, "scalar"): _scalar for module in NUMPY_CORE},
}
_ARRAY_CONSTRUCTORS = [(module, "_reconstruct") for module in NUMPY_CORE] + [("numpy", "dtype")]

# The errors malformed or hostile bytes raise while being read.
MALFORMED = (
    pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
    RuntimeError, OverflowError, MemoryError, struct.error,
)  # fmt: skip
DATA_LEAVES: tuple[type, ...] = (str, bytes, int, float, complex, bool, type(None))
# Arguments whose length is what a call copies (or may copy); charged against the file's size.
_SIZED = (str, bytes, bytearray, list, tuple, dict, OrderedDict, set, frozenset)
# Containers the reader itself built: their keys were checked when they were filled.
_CHECKED_CONTAINERS = (dict, OrderedDict, set, frozenset)


def check_key(key: Any) -> None:
    """Refuse a dict key or set item that is not a plain short value (see :data:`KEY_TYPES`).

    >>> check_key("weight"), check_key(7)
    (None, None)
    >>> check_key((1, 2))
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: a dict key or set item is a tuple; a data pickle's keys are strings, bytes, \
numbers of at most 64 bits or None
    """
    if type(key) in KEY_TYPES or (type(key) is int and key.bit_length() <= MAX_KEY_BITS):
        return
    raise pickle.UnpicklingError(
        f"a dict key or set item is a{' large' if type(key) is int else ''} {type(key).__name__}; a data "
        f"pickle's keys are strings, bytes, numbers of at most {MAX_KEY_BITS} bits or None"
    )


def _target_below(depth: int) -> Callable[[DataUnpickler], Any]:
    return lambda unpickler: unpickler.stack[-depth]


def _target_before_mark(unpickler: DataUnpickler) -> Any:
    return unpickler.metastack[-1][-1]


def _describe(obj: Any) -> str:
    """The qualified name of a class or function, else of the object's type (never the object itself)."""
    name = getattr(obj, "__qualname__", None) if isinstance(obj, type) or callable(obj) else None
    return name if isinstance(name, str) else type(obj).__qualname__


def _remaining_bytes(file: io.BytesIO) -> int:
    position = file.tell()
    end = file.seek(0, io.SEEK_END)
    file.seek(position)
    return end - position


class DataUnpickler(pickle._Unpickler):
    """pickle's own (pure-Python) unpickler with every opcode that could act on more than data guarded.

    The C unpickler runs ``BUILD`` on whatever object is on the stack; this one dispatches through a
    table that we can change, so the guards see every opcode.

    Args:
        file: the pickle's bytes.
        constructors: ``{(module, name): callable}``, the only globals the pickle may name. When
            it is not empty, numpy arrays and dtypes may be built too.
        persistent_load: what a persistent id becomes (``None``: persistent ids are refused).
        encoding: how Python 2 strings are decoded (``"latin1"`` for Python 2 numpy pickles).
        expected: what the file should be, for the refusal of an unknown global.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(
        self,
        file: io.BytesIO,
        constructors: dict[tuple[str, str], Any],
        persistent_load: Callable[[Any], Any] | None = None,
        encoding: str = "ASCII",
        expected: str = "a data pickle",
    ) -> None:
        super().__init__(file, encoding=encoding)
        self._constructors = constructors
        self._persistent_load = persistent_load
        self._expected = expected
        # The objects BUILD may act on: numpy arrays and dtypes this reader has just created for it.
        self._buildable: dict[int, Any] = {}
        # What calls may still copy: the bytes left in the file (each value is in it once).
        self._size = _remaining_bytes(file)
        self._copy_budget = self._size

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._constructors:
            return self._constructors[(module, name)]
        if self._constructors and (module, name) in _ARRAY_CONSTRUCTORS:
            return self._new_dtype if name == "dtype" else self._new_array
        raise pickle.UnpicklingError(
            f"the pickle refers to `{module[:100]}.{name[:100]}`, which {self._expected} does not need "
            "(this reader never runs code from a pickle)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise pickle.UnpicklingError(
                f"the pickle refers to a persistent id, which {self._expected} has none of"
            )
        return self._persistent_load(pid)

    def _new_array(self, cls: Any, *_: Any) -> np.ndarray:
        """``numpy.core.multiarray._reconstruct``: an empty array that BUILD then fills."""
        if cls is not _ARRAY_CLASS:
            raise pickle.UnpicklingError(f"an array of class {type(cls).__name__} is requested")
        return self._may_build(_multiarray._reconstruct(np.ndarray, (0,), b"b"))

    def _new_dtype(self, spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
        """``numpy.dtype``: a plain dtype from a spec such as ``'f4'``; BUILD may only confirm its state."""
        if not isinstance(spec, str) or not _DTYPE_SPEC.fullmatch(spec):
            what = f"the spec {spec!r}" if isinstance(spec, str) and len(spec) <= 20 else type(spec).__name__
            raise pickle.UnpicklingError(
                f"a numpy dtype is requested from {what}; only plain dtypes of kinds "
                f"{', '.join(DTYPE_KINDS)} (e.g. 'f4', 'u1') are read"
            )
        return self._may_build(_check_dtype(np.dtype(spec, bool(align), True)))

    def _may_build(self, obj: Any) -> Any:
        self._buildable[id(obj)] = obj
        return obj

    def _charge(self, size: int) -> None:
        """Count ``size`` items copied by a call; refuse once the file's size is exceeded."""
        self._copy_budget -= size
        if self._copy_budget < 0:
            raise pickle.UnpicklingError(
                f"the pickle passes more data to its constructors than its {self._size} bytes hold (one "
                "value reused through the memo many times); a data pickle passes each value once"
            )

    def _check_call(self, func: Any, args: Any, kwargs: Any = None) -> None:
        """Before ``func(*args, **kwargs)``: charge what it copies and check the keys it will hash."""
        if type(args) not in (tuple, list) or (kwargs is not None and type(kwargs) is not dict):
            raise pickle.UnpicklingError(f"a call's arguments are a {type(args).__name__}, not a tuple")
        values = [*args, *(kwargs or {}).values()]
        self._charge(sum(len(value) for value in values if type(value) in _SIZED))
        if isinstance(func, type) and issubclass(func, (dict, set, frozenset)):
            for value in args:
                _check_items(func, value)

    def _instantiate(self, klass: Any, args: list[Any]) -> None:  # INST and OBJ
        self._check_call(klass, args)
        super()._instantiate(klass, args)

    def _load_build(self) -> None:
        state, target = self.stack.pop(), self.stack[-1]
        if self._buildable.get(id(target)) is not target:
            raise pickle.UnpicklingError(
                f"the pickle sets the state of a {type(target).__name__} ({_describe(target)}), which a data "
                "pickle never does"
            )
        if isinstance(target, np.dtype):
            _confirm_dtype_state(target, state)
        else:
            self._charge(_check_array_state(state))
            target.__setstate__(state)

    def _load_reduce(self) -> None:
        self._check_call(self.stack[-2], self.stack[-1])
        _LOAD_REDUCE(self)

    def _load_newobj(self) -> None:
        self._check_call(self.stack[-2], self.stack[-1])
        _LOAD_NEWOBJ(self)

    def _load_newobj_ex(self) -> None:
        self._check_call(self.stack[-3], self.stack[-2], self.stack[-1])
        _LOAD_NEWOBJ_EX(self)

    def _load_dict(self) -> None:
        _check_keys(self.stack[0::2])
        _LOAD_DICT(self)

    def _load_frozenset(self) -> None:
        _check_keys(self.stack)
        _LOAD_FROZENSET(self)

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.DICT[0]] = _load_dict
    dispatch[pickle.FROZENSET[0]] = _load_frozenset


_LOAD_REDUCE = pickle._Unpickler.dispatch[pickle.REDUCE[0]]
_LOAD_NEWOBJ = pickle._Unpickler.dispatch[pickle.NEWOBJ[0]]
_LOAD_NEWOBJ_EX = pickle._Unpickler.dispatch[pickle.NEWOBJ_EX[0]]
_LOAD_DICT = pickle._Unpickler.dispatch[pickle.DICT[0]]
_LOAD_FROZENSET = pickle._Unpickler.dispatch[pickle.FROZENSET[0]]


def _check_keys(keys: Iterable[Any]) -> None:
    for key in keys:
        check_key(key)


def _check_items(container: type, value: Any) -> None:
    """The keys ``container(value)`` would hash (``dict``: pairs' first items; ``set``: the items)."""
    if type(value) in _CHECKED_CONTAINERS or type(value) in (str, bytes):
        return  # keys checked when the reader filled it; a string's characters are short keys
    if type(value) not in (list, tuple):
        raise pickle.UnpicklingError(f"a {container.__name__} is built from a {type(value).__name__}")
    for item in value:
        if not issubclass(container, dict):
            check_key(item)
        elif type(item) in (list, tuple) and len(item) == 2:
            check_key(item[0])
        elif type(item) not in (str, bytes):
            raise pickle.UnpicklingError(f"a {container.__name__} is built from a {type(item).__name__} item")


def _confirm_dtype_state(dtype: np.dtype, state: Any) -> None:
    """BUILD on a dtype: the state must be the one the plain dtype already has; nothing is set."""
    expected = dtype.__reduce__()[2]
    if (
        type(state) is not tuple
        or len(state) != len(expected)
        or any(type(value) not in (int, str, type(None)) for value in state)
        or state != expected
    ):
        raise pickle.UnpicklingError(
            f"the pickle gives the numpy dtype {dtype.str!r} a state other than its own (another byte "
            "order, fields or flags); only plain dtypes in the machine's byte order are read"
        )


def _check_array_state(state: Any) -> int:
    """BUILD on an array: ``(version, shape, dtype, is_fortran, data)`` with a plain dtype and raw data.

    Returns:
        The characters of ``data`` the array copies (a Python 2 string is encoded anew; bytes are shared).
    """
    if type(state) is not tuple or len(state) not in (4, 5):
        raise pickle.UnpicklingError(f"an array's state is a {type(state).__name__}, not a 5-tuple")
    _check_dtype(state[-3])
    data = state[-1]
    if type(data) not in (bytes, str):
        raise pickle.UnpicklingError(f"an array's data is a {type(data).__name__}, not bytes")
    return len(data) if type(data) is str else 0


def _guard(
    opcode: bytes,
    kinds: tuple[type, ...],
    target: Callable[[DataUnpickler], Any],
    keys: Callable[[DataUnpickler], Iterable[Any]] | None = None,
) -> None:
    """Let ``opcode`` act only on objects of ``kinds`` (the containers the reader built), with plain keys."""
    load = DataUnpickler.dispatch[opcode[0]]

    def guarded(unpickler: DataUnpickler) -> None:
        obj = target(unpickler)
        if type(obj) not in kinds:
            raise pickle.UnpicklingError(
                f"the pickle adds items to a {type(obj).__name__} ({_describe(obj)}), which a data pickle "
                "never does"
            )
        if keys is not None:
            _check_keys(keys(unpickler))
        load(unpickler)

    DataUnpickler.dispatch[opcode[0]] = guarded


_guard(pickle.APPEND, (list,), _target_below(2))
_guard(pickle.APPENDS, (list,), _target_before_mark)
_guard(pickle.SETITEM, (dict, OrderedDict), _target_below(3), lambda unpickler: [unpickler.stack[-2]])
_guard(pickle.SETITEMS, (dict, OrderedDict), _target_before_mark, lambda unpickler: unpickler.stack[0::2])
_guard(pickle.ADDITEMS, (set,), _target_before_mark, lambda unpickler: unpickler.stack)


def check_structure(
    value: Any,
    leaves: tuple[type, ...] = DATA_LEAVES,
    children_of: Callable[[Any], list[Any] | None] | None = None,
) -> None:
    """Walk everything a pickle built once (memoised by identity), bounding depth; refuse non-data.

    Args:
        value: what :class:`DataUnpickler` returned.
        leaves: types accepted as they are (numpy arrays and scalars of plain dtypes always are).
        children_of: for the caller's own record types, the objects they hold; ``None`` for others.

    Raises:
        pickle.UnpicklingError: nesting deeper than :data:`MAX_DEPTH`, or an object that is not data
            (numpy values of object, void or structured dtypes included).
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    seen: set[int] = set()
    while pending:
        obj, depth = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if depth > MAX_DEPTH:
            raise pickle.UnpicklingError(f"its data is nested more than {MAX_DEPTH} deep")
        if isinstance(obj, dict):
            children = [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            children = list(obj)
        elif _is_numpy(obj):
            _check_dtype(_dtype_of(obj))
            continue
        elif isinstance(obj, leaves):
            continue
        else:
            children = None if children_of is None else children_of(obj)
            if children is None:
                raise pickle.UnpicklingError(f"it holds a {type(obj).__name__}, which is not data")
        pending.extend((child, depth + 1) for child in children)


def _is_numpy(obj: Any) -> bool:
    return isinstance(obj, np.ndarray | np.generic | np.dtype)


def _dtype_of(obj: np.ndarray | np.generic | np.dtype) -> np.dtype:
    return obj if isinstance(obj, np.dtype) else obj.dtype


def refusal_reason(error: BaseException) -> str:
    """One of :data:`MALFORMED` as a reason: a refusal's own words, another error with its type.

    At most :data:`MAX_REASON` characters: an error raised inside a library may quote the file's data.
    """
    reason = str(error) if isinstance(error, pickle.UnpicklingError) else f"{type(error).__name__}: {error}"
    reason = " ".join(reason.split())  # one line
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


def short_names(keys: Iterable[Any], limit: int = 10, width: int = 40) -> str:
    """A bounded description of a container's keys: at most ``limit`` short strings, then a count.

    Never formats a key that is not a string (its ``str`` could be exponentially long); such keys are
    named by type.

    >>> short_names(["G", "D", 3, "x" * 100], limit=3)
    "['D', 'G', <int>] and 1 more"
    """
    keys = list(keys)
    shown = [
        repr(key if len(key) <= width else key[: width - 3] + "...")
        if isinstance(key, str)
        else f"<{type(key).__name__}>"
        for key in keys[:limit]
    ]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"[{', '.join(sorted(shown))}]{more}"


def read_data(
    raw: bytes,
    constructors: dict[tuple[str, str], Any],
    *,
    encoding: str = "ASCII",
    expected: str = "a data pickle",
    leaves: tuple[type, ...] = DATA_LEAVES,
    children_of: Callable[[Any], list[Any] | None] | None = None,
) -> Any:
    """The value the pickle ``raw`` holds, built as data only, its structure checked.

    Raises:
        pickle.UnpicklingError: (or another of :data:`MALFORMED`) a refusal, with the reason.

    >>> read_data(pickle.dumps({"data": np.arange(3, dtype=np.uint8), "labels": [0, 1]}), NUMPY_GLOBALS)
    {'data': array([0, 1, 2], dtype=uint8), 'labels': [0, 1]}
    """
    reader = DataUnpickler(io.BytesIO(raw), constructors, encoding=encoding, expected=expected)
    value = reader.load()
    check_structure(value, leaves, children_of)
    return value


__all__ = [
    "DATA_LEAVES",
    "DTYPE_KINDS",
    "KEY_TYPES",
    "MALFORMED",
    "MAX_DEPTH",
    "MAX_KEY_BITS",
    "MAX_REASON",
    "NUMPY_GLOBALS",
    "DataUnpickler",
    "check_key",
    "check_structure",
    "read_data",
    "refusal_reason",
    "short_names",
]
