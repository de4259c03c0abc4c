"""Pickles read as data, never as code: the reader behind network pickles and CIFAR-10 batches.

:func:`pickle.load` calls whatever global a file names and sets the state of whatever object it
builds, so loading a file is running it. :class:`DataUnpickler` is pickle's own pure-Python
unpickler with every opcode that could act on more than data guarded:

- **Globals** come only from the caller's table of data constructors; any other is refused by name.
  A numpy array comes only from ``_reconstruct`` (an empty array) and ``BUILD`` (its data), so a
  pickle cannot ask for an array of any size it likes.
- **BUILD** (``__setstate__`` / ``__dict__`` update) acts only on a numpy array or dtype the reader has
  itself just created for it, never on a function, class, module or allowed global;
  ``APPEND``/``SETITEM``/``ADDITEMS`` act only on lists, dicts and sets.
- :func:`check_structure` walks what was built once (memoised), bounds its nesting by
  :data:`MAX_DEPTH` and refuses anything that is not data.

Every refusal is a ``pickle.UnpicklingError`` (or one of :data:`MALFORMED` for bytes that are not a
pickle); callers turn it into one error naming their file.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable
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


class _ArrayClass:
    """Stands for ``numpy.ndarray`` where a pickle names it as ``_reconstruct``'s first argument.

    It cannot be called: an array comes only from ``_reconstruct`` (an empty array) plus ``BUILD``
    (its data).
    """


_ARRAY_CLASS = _ArrayClass()

# Globals naming numpy arrays and scalars. ``_reconstruct`` and ``dtype`` are bound per reader (see
# ``DataUnpickler``) because their results are the only objects BUILD may set.
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _ARRAY_CLASS,
    **{(module, "scalar"): _multiarray.scalar for module in NUMPY_CORE},
}
_ARRAY_CONSTRUCTORS = [(module, "_reconstruct") for module in NUMPY_CORE] + [("numpy", "dtype")]

# The errors malformed or hostile bytes raise while being read.
MALFORMED = (
    pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
    RuntimeError, OverflowError, MemoryError, struct.error,
)  # fmt: skip
DATA_LEAVES: tuple[type, ...] = (str, bytes, int, float, complex, bool, type(None))


def _target_below(depth: int) -> Callable[[DataUnpickler], Any]:
    return lambda unpickler: unpickler.stack[-depth]


def _target_before_mark(unpickler: DataUnpickler) -> Any:
    return unpickler.metastack[-1][-1]


def _describe(obj: Any) -> str:
    """The qualified name of a class or function, else of the object's type."""
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__


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
        # The objects BUILD may set: numpy arrays and dtypes this reader has just created for it.
        self._buildable: dict[int, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._constructors:
            return self._constructors[(module, name)]
        if self._constructors and (module, name) in _ARRAY_CONSTRUCTORS:
            return self._new_dtype if name == "dtype" else self._new_array
        raise pickle.UnpicklingError(
            f"the pickle refers to `{module}.{name}`, which {self._expected} does not need (this reader "
            "never runs code from a pickle)"
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
        """``numpy.dtype``: always a new dtype (never numpy's shared ones), so that BUILD may set it."""
        if not isinstance(spec, str):
            raise pickle.UnpicklingError(f"a numpy dtype is requested from a {type(spec).__name__}")
        return self._may_build(np.dtype(spec, bool(align), True))

    def _may_build(self, obj: Any) -> Any:
        self._buildable[id(obj)] = obj
        return obj

    def _load_build(self) -> None:
        state, target = self.stack.pop(), self.stack[-1]
        if self._buildable.get(id(target)) is not target:
            raise pickle.UnpicklingError(
                f"the pickle sets the state of a {type(target).__name__} ({_describe(target)}), which a data "
                "pickle never does"
            )
        target.__setstate__(state)

    dispatch[pickle.BUILD[0]] = _load_build


def _guard(opcode: bytes, kinds: tuple[type, ...], target: Callable[[DataUnpickler], Any]) -> None:
    """Let ``opcode`` act only on objects of ``kinds`` (the containers the reader built)."""
    load = DataUnpickler.dispatch[opcode[0]]

    def guarded(unpickler: DataUnpickler) -> None:
        obj = target(unpickler)
        if type(obj) not in kinds:
            raise pickle.UnpicklingError(
                f"the pickle adds items to a {type(obj).__name__} ({_describe(obj)}), which a data pickle "
                "never does"
            )
        load(unpickler)

    DataUnpickler.dispatch[opcode[0]] = guarded


_guard(pickle.APPEND, (list,), _target_below(2))
_guard(pickle.APPENDS, (list,), _target_before_mark)
_guard(pickle.SETITEM, (dict, OrderedDict), _target_below(3))
_guard(pickle.SETITEMS, (dict, OrderedDict), _target_before_mark)
_guard(pickle.ADDITEMS, (set,), _target_before_mark)


def check_structure(
    value: Any,
    leaves: tuple[type, ...] = DATA_LEAVES,
    children_of: Callable[[Any], list[Any] | None] | None = None,
) -> None:
    """Walk everything a pickle built once (memoised by identity), bounding depth; refuse non-data.

    Args:
        value: what :class:`DataUnpickler` returned.
        leaves: types accepted as they are (numpy arrays and scalars without objects always are).
        children_of: for the caller's own record types, the objects they hold; ``None`` for others.

    Raises:
        pickle.UnpicklingError: nesting deeper than :data:`MAX_DEPTH`, or an object that is not data.
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
        elif isinstance(obj, leaves) or (_is_numpy(obj) and not _dtype_of(obj).hasobject):
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
    """One of :data:`MALFORMED` as a reason: a refusal's own words, another error with its type."""
    return str(error) if isinstance(error, pickle.UnpicklingError) else f"{type(error).__name__}: {error}"


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
    "MALFORMED",
    "MAX_DEPTH",
    "NUMPY_GLOBALS",
    "DataUnpickler",
    "check_structure",
    "read_data",
    "refusal_reason",
]
