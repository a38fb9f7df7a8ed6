"""Running a subprocess the way onloop needs it: every agent and every gate goes through here.

What this module guarantees, whatever the sandbox:
- the child gets its own process group (session), and on timeout the whole group is killed: first
  SIGTERM, then SIGKILL after a grace period. Agent CLIs fork helpers (Codex retries a dead endpoint
  forever), so killing only the direct child is not enough;
- output is streamed to a log file as it arrives (a crash of onloop keeps the partial transcript) and,
  line by line, to an optional callback (live events);
- output beyond the byte cap is not stored and stops the process: an agent flooding its output is cut
  off, not buffered into memory;
- the `Sandbox` decides what argv actually runs (bubblewrap, or nothing when the policy says so).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

KILL_GRACE_SECONDS = 2.0
_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits applied to one process (and its children, where the OS allows)."""

    cpu_seconds: int | None = None
    memory_bytes: int | None = None
    processes: int | None = None
    output_bytes: int | None = None
    file_size_bytes: int | None = None
    open_files: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """What to run. `writable` lists the only paths the process may write (the sandbox enforces it)."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    stdin: bytes | None = None
    writable: tuple[Path, ...] = ()
    network: bool = False
    limits: Limits = Limits()
    label: str = ""
    # Open file descriptors the child inherits (a gate's private report channel); everything else is
    # closed in the child, as subprocess does by default.
    pass_fds: tuple[int, ...] = ()
    # Host paths masked inside the sandbox for this process only (a differential gate's reference,
    # hidden from the candidate): a directory becomes an empty tmpfs, a file cannot be opened.
    masked: tuple[Path, ...] = ()
    # Host paths shown read-only to this process only (onloop's pytest plugin for a gate).
    readable: tuple[Path, ...] = ()
    # Empty private directories for this process only, on top of everything (a gate's caches in a
    # read-only checkout): what is written there is gone when the process ends.
    tmpfs: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int | None
    timed_out: bool
    duration: float
    output_bytes: int
    output_truncated: bool
    log_path: Path | None
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class Sandbox(Protocol):
    """Turns a process spec into the argv that really runs, enforcing the policy around it."""

    name: str

    def check(self) -> None:
        """Raise `SandboxUnavailable` with an actionable message if this sandbox cannot work here."""
        ...

    def wrap(self, spec: ProcessSpec) -> list[str]:
        """The argv to execute for `spec` (the environment is passed separately, see `env_for`)."""
        ...

    def env_for(self, spec: ProcessSpec) -> dict[str, str]:
        """The environment of the outer process (a sandbox may pass the real one inside by flags)."""
        ...


class NoSandbox:
    """Runs processes directly on the host. Only used when the policy says `sandbox = "none"`."""

    name = "none"

    def check(self) -> None:
        return None

    def wrap(self, spec: ProcessSpec) -> list[str]:
        return list(spec.argv)

    def env_for(self, spec: ProcessSpec) -> dict[str, str]:
        return dict(spec.env)


LineCallback = Callable[[str], None]


def run_process(
    spec: ProcessSpec,
    sandbox: Sandbox,
    *,
    log_path: Path | None = None,
    on_line: LineCallback | None = None,
    stderr_path: Path | None = None,
) -> ProcessResult:
    """Run `spec` under `sandbox`, streaming stdout to `log_path` and `on_line`; never raises on exit.

    With `stderr_path`, stderr goes there through its own pump, under the same byte cap as stdout: a
    process must not be able to flood the disk through the stream nobody reads.
    """
    argv = sandbox.wrap(spec)
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=str(spec.cwd),
        env=sandbox.env_for(spec),
        stdin=subprocess.PIPE if spec.stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr_path else subprocess.STDOUT,
        start_new_session=True,
        pass_fds=spec.pass_fds,
    )
    killer = _Killer(proc)
    timer = threading.Timer(spec.timeout, killer.kill_for_timeout) if spec.timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    errors = _pump_in_thread(proc.stderr, spec.limits.output_bytes, stderr_path, killer) if stderr_path else None
    try:
        if spec.stdin is not None and proc.stdin is not None:
            _feed_stdin(proc.stdin, spec.stdin)
        assert proc.stdout is not None
        written, truncated = _pump(proc.stdout, spec.limits.output_bytes, log_path, on_line, killer)
        proc.wait()
    finally:
        if timer:
            timer.cancel()
        killer.kill_group_if_alive()
        if errors is not None:
            errors.join(timeout=KILL_GRACE_SECONDS * 2)
    code = proc.returncode
    return ProcessResult(
        exit_code=code,
        timed_out=killer.timed_out,
        duration=time.monotonic() - start,
        output_bytes=written,
        output_truncated=truncated,
        log_path=log_path,
        signal=-code if code is not None and code < 0 else None,
    )


def _pump_in_thread(stream: IO[bytes] | None, cap: int | None, path: Path | None, killer: _Killer) -> threading.Thread:
    assert stream is not None
    thread = threading.Thread(target=_pump, args=(stream, cap, path, None, killer), daemon=True)
    thread.start()
    return thread


def _feed_stdin(pipe: IO[bytes], data: bytes) -> None:
    def feed() -> None:
        try:
            pipe.write(data)
        except BrokenPipeError:
            pass  # the child exited without reading its stdin; its exit code tells the story
        finally:
            with contextlib.suppress(BrokenPipeError):
                pipe.close()

    threading.Thread(target=feed, daemon=True).start()


def _pump(
    stream: IO[bytes],
    cap: int | None,
    log_path: Path | None,
    on_line: LineCallback | None,
    killer: _Killer,
) -> tuple[int, bool]:
    """Copy a child's stream to the log and the callback; returns (bytes stored, truncated)."""
    log = log_path.open("ab", buffering=0) if log_path else None
    stored = 0
    truncated = False
    pending = b""
    try:
        while True:
            chunk = stream.read1(_CHUNK)  # type: ignore[attr-defined]  # a BufferedReader at runtime
            if not chunk:
                break
            if cap is not None and stored + len(chunk) > cap:
                chunk = chunk[: max(0, cap - stored)]
                truncated = True
            stored += len(chunk)
            if log and chunk:
                log.write(chunk)
            if on_line:
                pending = _emit_lines(pending + chunk, on_line)
            if truncated:
                killer.kill_group_if_alive()
                break
        if on_line and pending:
            on_line(pending.decode("utf-8", "replace"))
    finally:
        if log:
            log.close()
    return stored, truncated


def _emit_lines(buffer: bytes, on_line: LineCallback) -> bytes:
    *lines, rest = buffer.split(b"\n")
    for line in lines:
        on_line(line.decode("utf-8", "replace"))
    return rest


class _Killer:
    """Kills the child's whole process group, once, and remembers whether it was for a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._lock = threading.Lock()
        self.timed_out = False

    def kill_for_timeout(self) -> None:
        with self._lock:
            self.timed_out = True
        self.kill_group_if_alive()

    def kill_group_if_alive(self) -> None:
        pgid = self._proc.pid  # start_new_session makes the child its group's leader
        if not _group_alive(pgid):
            return
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.02)
        _signal_group(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
