"""Property-based fuzz of the network-pickle reader over pickle opcodes (issue 33).

Random opcode streams, built from the opcodes a network pickle uses and the ones an attacker reaches
for (globals outside the allow-list, REDUCE, BUILD, NEWOBJ, persistent ids, memo reads and writes,
shared and deeply nested containers), plus raw bytes, go through ``read_network_pickle``. Every stream
is either read or refused with a :class:`NetworkPickleError` whose message is one line under 1,000
characters, within the bounds ``docs/guarantees.md`` states; nothing else escapes (no other exception,
no crash, no hang). The ``ci`` Hypothesis profile (tests/conftest.py) makes the run derandomised.
"""

from __future__ import annotations

import pickle
import struct
import tempfile
import time
from pathlib import Path

import pytest

from lightning_genaug.models.stylegan2.official import NetworkPickleError, read_network_pickle

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SECONDS_PER_FILE = 2.0
MESSAGE_CHARACTERS = 1000

GLOBALS = [
    # what a network snapshot names (allowed, with checked arguments)
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("collections", "OrderedDict"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("dnnlib.util", "EasyDict"),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    ("torch", "FloatStorage"),
    # what an attacker names
    ("builtins", "eval"),
    ("builtins", "getattr"),
    ("os", "system"),
    ("subprocess", "Popen"),
    ("torch", "load"),
    ("numpy", "load"),
]

# Operations: ("push", bytes) push one value; ("op", bytes) act on the stack or the memo.
PUSHES = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(lambda n: pickle.BININT + struct.pack("<i", n)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: pickle.BINFLOAT + struct.pack(">d", x)),
    st.text(max_size=12).map(lambda s: _short_unicode(s.encode("utf-8", "surrogatepass"))),
    st.binary(max_size=24).map(lambda b: pickle.SHORT_BINBYTES + bytes([len(b)]) + b),
    st.sampled_from(
        [
            pickle.NONE,
            pickle.NEWTRUE,
            pickle.NEWFALSE,
            pickle.EMPTY_DICT,
            pickle.EMPTY_LIST,
            pickle.EMPTY_TUPLE,
        ]
    ),
    st.sampled_from(GLOBALS).map(lambda name: pickle.GLOBAL + f"{name[0]}\n{name[1]}\n".encode()),
)
ACTIONS = st.one_of(
    st.sampled_from(
        [
            pickle.MARK,
            pickle.TUPLE,
            pickle.TUPLE1,
            pickle.TUPLE2,
            pickle.TUPLE3,
            pickle.LIST,
            pickle.DICT,
            pickle.APPEND,
            pickle.APPENDS,
            pickle.SETITEM,
            pickle.SETITEMS,
            pickle.REDUCE,
            pickle.BUILD,
            pickle.NEWOBJ,
            pickle.BINPERSID,
            pickle.POP,
            pickle.DUP,
            pickle.MEMOIZE,
        ]
    ),
    st.integers(0, 6).map(lambda i: pickle.BINPUT + bytes([i])),
    st.integers(0, 6).map(lambda i: pickle.BINGET + bytes([i])),
    st.binary(min_size=1, max_size=8),  # anything at all
)


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _dtype(kind: str, state: tuple[int, ...] | None) -> bytes:
    """``numpy.dtype(kind, False, True)``, then BUILD with a forged state when given."""
    made = _global("numpy", "dtype") + _short_unicode(kind.encode()) + pickle.NEWFALSE + pickle.NEWTRUE
    made += pickle.TUPLE3 + pickle.REDUCE
    if state is None:
        return made
    fields = b"".join(pickle.BININT + struct.pack("<i", value) for value in state)
    return made + pickle.MARK + fields + pickle.TUPLE + pickle.BUILD


def _tensor(numel: int, size: tuple[int, ...], key: str) -> bytes:
    """``_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`` over a persistent storage."""
    storage = pickle.MARK + _short_unicode(b"storage") + _global("torch", "FloatStorage")
    storage += _short_unicode(key.encode()) + _short_unicode(b"cpu")
    storage += pickle.BININT + struct.pack("<i", numel) + pickle.TUPLE + pickle.BINPERSID
    ints = b"".join(pickle.BININT + struct.pack("<i", value) for value in size)
    shape = pickle.MARK + ints + pickle.TUPLE
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + storage
        + pickle.BININT + struct.pack("<i", 0)
        + shape
        + shape
        + pickle.NEWFALSE
        + _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
        + pickle.TUPLE
        + pickle.REDUCE
    )  # fmt: skip


def _shared_nesting(depth: int) -> bytes:
    """``t = (t, t)`` ``depth`` times through memo slot 9: 2^depth leaves to walk, hash or print naively."""
    stream = pickle.NONE + pickle.BINPUT + bytes([9]) + pickle.POP
    for _ in range(depth):
        stream += pickle.BINGET + bytes([9]) + pickle.BINGET + bytes([9]) + pickle.TUPLE2
        stream += pickle.BINPUT + bytes([9]) + pickle.POP
    return stream + pickle.BINGET + bytes([9])  # one value on the stack: the whole nest


# The idioms of hostile files, as whole values the random streams combine with everything else.
IDIOMS = st.one_of(
    st.builds(
        _dtype,
        st.sampled_from(["f4", "<i8", "u1", "O", "V8", "U4", "S3", "c8", "M8"]),
        st.none() | st.lists(st.integers(-(2**31), 2**31 - 1), max_size=9).map(tuple),
    ),
    st.builds(
        _tensor,
        st.integers(-4, 2**30),
        st.lists(st.integers(-2, 2**20), min_size=0, max_size=4).map(tuple),
        st.sampled_from(["0", "1", "0"]),
    ),
    st.integers(1, 30).map(_shared_nesting),
)
STREAMS = st.lists(st.one_of(PUSHES, ACTIONS, IDIOMS), max_size=40)


def _short_unicode(data: bytes) -> bytes:
    return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data


@pytest.fixture(scope="module")
def scratch() -> Path:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def read_within_bounds(path: Path) -> None:
    """Read ``path``; a refusal must be a NetworkPickleError of one short line, and come quickly."""
    started = time.perf_counter()
    try:
        read_network_pickle(path)
    except NetworkPickleError as error:
        message = str(error)
        assert "\n" not in message and len(message) < MESSAGE_CHARACTERS, message[:300]
    assert time.perf_counter() - started < SECONDS_PER_FILE


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=STREAMS, stop=st.booleans())
def test_any_opcode_stream_is_read_or_refused_in_one_short_line(
    scratch: Path, body: list[bytes], stop: bool
) -> None:
    path = scratch / "fuzzed.pkl"
    path.write_bytes(pickle.PROTO + bytes([2]) + b"".join(body) + (pickle.STOP if stop else b""))
    read_within_bounds(path)


@pytest.mark.parametrize("key", [True, False], ids=["as-key", "as-value"])
@pytest.mark.parametrize("depth", [24, 40])
def test_memo_shared_nesting_is_refused_quickly(scratch: Path, depth: int, key: bool) -> None:
    """``t = (t, t)`` nested 24 deep (16M leaves: 8.8 s and a 100 MB message on 0.3) or 40 deep."""
    nested, name = _shared_nesting(depth), _short_unicode(b"G")
    pair = nested + name if key else name + nested  # SETITEM takes the key below the value
    stream = pickle.PROTO + bytes([2]) + pickle.EMPTY_DICT + pair
    path = scratch / "nested.pkl"
    path.write_bytes(stream + pickle.SETITEM + pickle.STOP)
    read_within_bounds(path)


def test_the_pickle_fuzz_runs_derandomised_in_ci() -> None:
    assert settings().derandomize and settings().max_examples <= 100
