"""Run DDP scripts in subprocesses for the tests, and report a hang with every thread's stack.

Lightning's DDP launcher re-runs a script's command line for the other ranks, so DDP tests run
their training in a subprocess. Each runs in its own session (the ranks Lightning starts and the
DataLoader workers join it), meets its peers on the loopback interface only, and has Python's
fault handler on: past the deadline every process of the session gets ``SIGABRT``, which makes
each one write the stack of every thread to stderr before it dies, so a hang is reported with
those stacks instead of a bare ``TimeoutExpired``, and no process is left running.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
LOWEST_PORT = 20000  # above the ports services commonly listen on


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct ports free on the loopback interface now, outside the kernel's ephemeral range.

    A master port is bound seconds after it is chosen (the script first imports torch). A port of the
    ephemeral range could meanwhile be handed to a socket of another run's gloo connections, and a
    rank would then reach that socket instead of its master and wait forever: a hang seen in the
    suite. Ports outside the range are never handed out that way. Where the range leaves too few
    ports outside it, the kernel picks them (in the range).
    """
    low, high = ephemeral_port_range()
    outside = [*range(LOWEST_PORT, low), *range(high + 1, 65536)]
    with ExitStack() as stack:  # every probe stays bound until all are chosen
        chosen: list[int] = []
        for port in random.Random().sample(outside, k=min(4 * count + 64, len(outside))):
            if len(chosen) == count:
                break
            probe = stack.enter_context(socket.socket())
            with suppress(OSError):
                probe.bind((LOOPBACK, port))
                chosen.append(port)
        while len(chosen) < count:
            probe = stack.enter_context(socket.socket())
            probe.bind((LOOPBACK, 0))
            chosen.append(probe.getsockname()[1])
    return chosen


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands to sockets that bind none: Linux's setting, or where it cannot be read,
    a range that covers Linux's default (32768-60999) and the BSDs' and macOS's (49152-65535)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 65535


def ddp_environment(port: int, **extra: str) -> dict[str, str]:
    """The environment of a DDP script: one thread, the master and gloo on the loopback, fault handler on."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "PYTHONFAULTHANDLER": "1",
        "MASTER_ADDR": LOOPBACK,
        "MASTER_PORT": str(port),
        "GLOO_SOCKET_IFNAME": "lo",
        **extra,
    }


@dataclass
class Script:
    """One process to start: ``python script *args`` in ``cwd``, with ``env`` over :func:`ddp_environment`.

    ``port`` is the master's; processes of one run (simulated nodes) share it. ``None``: a free port
    of its own.
    """

    script: Path
    args: list[str]
    cwd: Path
    port: int | None = None
    env: dict[str, str] | None = None


def run_scripts(*scripts: Script, timeout: float = 120.0, retries_on_hang: int = 1) -> None:
    """Start every script at once and wait until each and the processes it started have exited.

    A run that hangs (its session still alive at ``timeout`` seconds) is ended and started again up
    to ``retries_on_hang`` times, with the stacks of the hung run in a warning: a hang seen once in
    CI (``tests/test_streaming_ddp.py``, never reproduced on the same kind of machine) must not hide
    what the test checks, and a run that hangs every time still fails. A non-zero exit is never retried.

    Raises:
        AssertionError: a process exited non-zero, or the last attempt hung (the stacks of the
            threads of every process are in the message).
    """
    for attempt in range(retries_on_hang + 1):
        hung, report = _run_once(scripts, timeout)
        if not hung or attempt == retries_on_hang:
            break
        warnings.warn(f"DDP run hung, started again:\n{report}", stacklevel=2)
    assert not report, report


def _run_once(scripts: tuple[Script, ...], timeout: float) -> tuple[bool, str]:
    """Run ``scripts`` side by side: whether one hung, and the stderr of each that failed or hung.

    A process counts as finished when its stderr reaches end of file: every process of its session
    (rank 0, the ranks Lightning starts, loader workers) holds that pipe until it exits.
    """
    own_ports = iter(free_loopback_ports(sum(spec.port is None for spec in scripts)))
    runs = []
    for spec in scripts:
        spec.cwd.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [sys.executable, str(spec.script), *spec.args],
            cwd=spec.cwd,
            env=ddp_environment(spec.port or next(own_ports), **(spec.env or {})),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        stderr: list[str] = []
        reader = threading.Thread(target=lambda p=process, out=stderr: out.append(p.stderr.read()))
        reader.daemon = True
        reader.start()
        runs.append((process, reader, stderr))
    deadline = time.monotonic() + timeout
    for _, reader, _ in runs:
        reader.join(max(0.0, deadline - time.monotonic()))
    hung = [process for process, reader, _ in runs if reader.is_alive()]
    for process in hung:
        _signal_session(process, signal.SIGABRT)  # the fault handler writes each thread's stack
    if hung:
        time.sleep(2.0)
    for process, reader, _ in runs:
        _signal_session(process, signal.SIGKILL)  # whatever is left of the session
        reader.join()
        process.stderr.close()
        process.wait()
    report = "\n\n".join(
        f"{' '.join(map(str, process.args[1:]))}: "
        + (f"still running after {timeout:.0f} s" if process in hung else f"exit code {process.returncode}")
        + f"\n{''.join(stderr)[-20000:]}"
        for process, _, stderr in runs
        if process in hung or process.returncode != 0
    )
    return bool(hung), report


def _signal_session(process: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to every process left in ``process``'s session (its process group)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
