"""A pytest gate's per-test results over a private report channel, not a file the tests can rewrite.

Before: pytest wrote junit XML to a path in argv, and the code under test could rewrite that file at
exit, or tell a re-run apart by the file name and behave differently. Now onloop opens a Unix
socket pair per run (`PytestChannel`), writes a random nonce into it, and passes one end to the test
process as an inherited fd named by `ONLOOP_GATE_REPORT_FD`. The plugin
`pytest_plugin/onloop_gate_report.py` (loaded with `-p onloop_gate_report`, its directory first on
PYTHONPATH) reads the nonce at import, before any project code runs, hides the variable and the fd
from subprocesses, and streams one JSON line per event, each carrying the nonce. argv and the
environment are the same on every run apart from the fd's number; the nonce is in neither. A reader
thread drains the channel while the process runs (the plugin never blocks on a full socket buffer),
up to a byte cap.

What onloop trusts, and why:
- a line without the nonce (or not JSON) was written by someone else: it is counted as `forged`;
- one check per nodeid, and the worst outcome wins across phases and across duplicate records
  (error > failed > skipped > passed), so a record that claims "passed" for a failing test changes
  nothing. A test with a setup record and no teardown record never ran to its end: an ERROR;
- a subtest's records (`sub`) are no checks: a failing one fails its test (whose message lists the
  failing subtests), a passing or skipped one changes nothing. pytest reports a unittest test whose
  `subTest` failed as passed; its failing subtest record is what says otherwise;
- under pytest-rerunfailures (records with `attempt`), an attempt that ended in a `rerun` record and
  was followed by another attempt no longer counts: the later attempt decides, so a test that failed
  then passed is one passed check whose message says it was flaky, and a failing subtest of the
  superseded attempt does not fail it;
- the run counts only if the plugin said `hello` (from the plugin file onloop ships), sent `finish`,
  and the process's exit code equals the exit status in `finish`.

A run that is no result is reported in `PytestReport.broken`, never as a failing check: it says
nothing about any test. Broken, from the most telling sign down: more bytes than the cap; any forged
line; no `hello` (the plugin did not load, or was disabled); no `finish` (killed, `os._exit`, a
crash, or pytest stopped before its session: a bad option or a conftest.py that fails to import, exit
4); a stop by `pytest.exit()` or KeyboardInterrupt, whatever the exit status; exit status 3
(internal error), 4 (usage error) or 5 (no tests); 2 without a collection error; the exit code
differing from the reported status (an atexit handler ran); the channel still held open by a process
that outlived the run. Exit status 2 with collection errors is a result: each module that failed to
collect is an ERROR check with its nodeid (the TDD case: a test imports what does not exist yet). So
is pytest-xdist's 2 after `-x`/`--maxfail`, where pytest alone exits 1.

The residual limit: the tests run in pytest's interpreter, so code written against this plugin in
particular (patching it, finding the nonce in its memory, shadowing its module name, e.g. an
`onloop_gate_report.py` in the worktree under `python -m pytest`, where the current directory precedes
PYTHONPATH) can still forge a report. The nonce and the worst-outcome rule stop the generic forger
(fake records, a rewritten file, an early exit); code aimed at onloop itself is left to review and
to the lead's detector for such code.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.parsers.pytest_text import rerun_message, subtests_message

ENV_FD = "ONLOOP_GATE_REPORT_FD"
PLUGIN_NAME = "onloop_gate_report"
PLUGIN_DIR = Path(__file__).resolve().parent / "pytest_plugin"
PLUGIN_FILE = PLUGIN_DIR / f"{PLUGIN_NAME}.py"
BYTE_CAP = 64 * 1024 * 1024
# After the test process exited, how long a leftover process may keep the channel open.
CLOSE_TIMEOUT = 5.0
_PYTEST_PROGRAMS = frozenset({"pytest", "py.test"})
# Options of package runners whose value names a package, not the program (`uv run --with pytest pytest`).
_PACKAGE_OPTIONS = frozenset({"--with", "--from", "-w"})
_RANK = {CheckStatus.PASSED: 0, CheckStatus.SKIPPED: 1, CheckStatus.FAILED: 2, CheckStatus.ERROR: 3}
_DETAIL_LINES = 12
_MESSAGE_MAX = 300
# What pytest's own exit statuses mean, where they are no test result.
_NO_RESULT = {
    3: "pytest hit an internal error (exit status 3: a plugin or conftest.py hook raised)",
    4: "pytest reported a usage error (exit status 4: a bad command-line option, or an error while "
       "loading conftest.py or a plugin)",
    5: "pytest collected no tests (exit status 5)",
}


@dataclass(frozen=True, slots=True)
class PytestReport:
    """What the channel carried, aggregated: one check per nodeid, or the reason the run is no result."""

    checks: tuple[CheckResult, ...]
    finished: bool
    exitstatus: int | None
    collected: int | None
    forged: int
    broken: str | None
    plugins: tuple[str, ...] = ()  # project files loaded as pytest plugins (conftest.py, pytest_plugins)


def plugin_module_name() -> str:
    """A module name for onloop's plugin that nothing committed before it was drawn can take."""
    return f"{PLUGIN_NAME}_{secrets.token_hex(8)}"


def pytest_program_index(argv: Sequence[str]) -> int | None:
    """Index of the argv element that is pytest itself (`pytest`, `.venv/bin/pytest`, `-m pytest`)."""
    for index, part in enumerate(argv):
        previous = argv[index - 1] if index else ""
        if previous == "-m" and part == "pytest":
            return index
        if os.path.basename(part) in _PYTEST_PROGRAMS and previous not in _PACKAGE_OPTIONS:
            return index
    return None


def wrap_pytest_argv(argv: Sequence[str], module: str = PLUGIN_NAME) -> tuple[str, ...] | None:
    """argv with `-p <module>` right after the pytest program, or None if it runs no pytest."""
    index = pytest_program_index(argv)
    if index is None:
        return None
    return (*argv[: index + 1], "-p", module, *argv[index + 1 :])


class PytestChannel:
    """One run's report channel. Use it as a context manager; it always closes both sockets.

    The order: `wrap_argv` and `env` for the spec, `start()` (sends the nonce, starts the reader),
    spawn the process with `pass_fds=(child_fd,)`, `after_spawn()` once the child holds its end (or
    once it exited), then `finish(exit_code)`.
    """

    def __init__(self, *, byte_cap: int = BYTE_CAP, close_timeout: float = CLOSE_TIMEOUT,
                 plugin_home: Path | None = None, module: str | None = None) -> None:
        """`plugin_home`: a fresh directory to hold a copy of the plugin under the module name `module`
        (by default a new random one, `plugin_module_name()`), so nothing in the project can shadow it
        by name (a planted `onloop_gate_report.py` precedes PYTHONPATH under `python -m pytest`). The
        caller passes the same name to every gate run of a run, so a re-run's argv is the first run's.
        Without `plugin_home`, the shipped module is used."""
        self.module, self.plugin_file = PLUGIN_NAME, PLUGIN_FILE
        if plugin_home is not None:
            self.module = module or plugin_module_name()
            plugin_home.mkdir(parents=True, exist_ok=True)
            self.plugin_file = plugin_home / f"{self.module}.py"
            shutil.copyfile(PLUGIN_FILE, self.plugin_file)
        self._parent, self._child = socket.socketpair()
        # Both ends stay non-inheritable: `pass_fds` hands the child's end to that one process only.
        self._child_fd = self._child.fileno()
        self._nonce = secrets.token_hex(16)
        self._reader = _Reader(self._parent, byte_cap)
        self._close_timeout = close_timeout
        self._child_closed = False

    @property
    def child_fd(self) -> int:
        """The fd the test process inherits (`ProcessSpec.pass_fds`)."""
        return self._child_fd

    def wrap_argv(self, argv: Sequence[str]) -> tuple[str, ...] | None:
        return wrap_pytest_argv(argv, self.module)

    def env(self, pythonpath: str | None) -> dict[str, str]:
        """The entries to add to the gate's environment; `pythonpath` is the PYTHONPATH it had, if any."""
        path = str(self.plugin_file.parent) + (os.pathsep + pythonpath if pythonpath else "")
        return {ENV_FD: str(self.child_fd), "PYTHONPATH": path}

    def start(self) -> None:
        """Write the nonce (before the process exists, so only the plugin's early read can get it)."""
        self._parent.sendall(self._nonce.encode("ascii") + b"\n")
        self._reader.start()

    def after_spawn(self) -> None:
        """Close the parent's copy of the child's end, so the reader sees EOF when the child is gone."""
        if not self._child_closed:
            self._child_closed = True
            self._child.close()

    def finish(self, exit_code: int | None) -> PytestReport:
        """Wait for the channel to close, then aggregate what it carried (`exit_code`: the process's)."""
        self.after_spawn()
        lingering = not self._reader.join(self._close_timeout)
        if lingering:
            self._reader.stop()
            self._reader.join(self._close_timeout)
        report = parse_report(bytes(self._reader.data), self._nonce, exit_code, self.plugin_file)
        if self._reader.overflowed:
            return _with_broken(report, f"the report channel carried more than {self._reader.cap} bytes")
        if lingering:
            return _with_broken(report, f"the report channel was still open {self._close_timeout:.0f}s after "
                                        "the test process exited: a leftover process holds it")
        return report

    def close(self) -> None:
        self.after_spawn()
        self._reader.stop()
        self._reader.join(self._close_timeout)
        self._parent.close()

    def __enter__(self) -> PytestChannel:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class _Reader:
    """Collects everything the channel carries into memory, up to a byte cap, in a daemon thread."""

    def __init__(self, sock: socket.socket, cap: int) -> None:
        self._sock = sock
        self.cap = cap
        self.data = bytearray()
        self.overflowed = False
        self._thread = threading.Thread(target=self._run, name="onloop-pytest-report", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """True once the reader is done (EOF, cap or stop); never started counts as done."""
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        # shutdown wakes a blocked recv (close alone does not) and makes the writer's sends fail.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            if len(self.data) + len(chunk) > self.cap:
                self.overflowed = True
                self.stop()  # the plugin's next write fails, so a flood ends instead of filling memory
                return
            self.data += chunk


def _with_broken(report: PytestReport, reason: str) -> PytestReport:
    return replace(report, broken=reason)


# -- parsing -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Records:
    """The genuine records of one run, sorted by kind (a private accumulator; the result is frozen)."""

    hello: dict[str, Any] | None = None
    finish: dict[str, Any] | None = None
    collected: int | None = None
    forged: int = 0
    foreign: list[dict[str, Any]] = field(default_factory=list)  # reports a running test made of others
    collect_errors: list[dict[str, Any]] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    plugins: set[str] = field(default_factory=set)

    def add(self, record: dict[str, Any]) -> None:
        kind = record.get("t")
        if kind == "hello" and self.hello is None:
            self.hello = record
        elif kind == "finish" and self.finish is None:
            self.finish = record
        elif kind == "collected" and isinstance(record.get("count"), int):
            self.collected = record["count"]
        elif kind == "collect":
            self.collect_errors.append(record)
        elif kind == "test":
            self.tests.append(record)
        elif kind == "interrupted":
            self.interrupts.append(record)
        elif kind == "plugin" and isinstance(record.get("id"), str):
            self.plugins.add(record["id"])
        elif kind == "foreign":
            self.foreign.append(record)


def parse_report(data: bytes, nonce: str, exit_code: int | None, plugin_file: Path = PLUGIN_FILE) -> PytestReport:
    """Aggregate the channel's bytes into checks and decide whether the run is a result at all."""
    records = _read_records(data, nonce)
    checks = _aggregate(records)
    exitstatus = _int_or_none(records.finish.get("exitstatus")) if records.finish else None
    collected = records.collected
    if collected is None and records.finish is not None:
        # pytest-xdist's controller collects nothing itself; its session counts what the workers found.
        collected = _int_or_none(records.finish.get("testscollected"))
    return PytestReport(
        checks=checks,
        finished=records.finish is not None,
        exitstatus=exitstatus,
        collected=collected,
        forged=records.forged,
        broken=_broken_reason(records, checks, exitstatus, exit_code, plugin_file),
        plugins=tuple(sorted(records.plugins)),
    )


def _read_records(data: bytes, nonce: str) -> _Records:
    records = _Records()
    *lines, tail = data.split(b"\n")
    for line in lines:
        record = _genuine(line, nonce)
        if record is None:
            records.forged += 1
        else:
            records.add(record)
    # An unterminated last line is what a writer killed mid-record leaves (the run then has no
    # finish, and is broken for that); after a finish nothing legitimate follows, so it is forged.
    if tail.strip() and records.finish is not None:
        records.forged += 1
    return records


def _genuine(line: bytes, nonce: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("k"), str):
        return None
    return record if hmac.compare_digest(record["k"].encode(), nonce.encode()) else None


def _aggregate(records: _Records) -> tuple[CheckResult, ...]:
    """One check per nodeid; the worst status wins, and its first record gives message and location."""
    worst: dict[str, CheckResult] = {}
    for record in records.collect_errors:
        _keep_worst(worst, _check(record, str(record.get("nodeid") or "pytest:collection"), CheckStatus.ERROR))
    started = {str(r.get("nodeid")) for r in records.tests if r.get("when") == "setup"}
    finished = {str(r.get("nodeid")) for r in records.tests if r.get("when") == "teardown"}
    tests, reruns = _last_attempts(records.tests)
    failed_subtests: dict[str, list[dict[str, Any]]] = {}
    for record in tests:
        if not record.get("nodeid"):
            continue
        if isinstance(record.get("sub"), str):
            if record.get("outcome") == "failed":
                failed_subtests.setdefault(str(record["nodeid"]), []).append(record)
            continue
        status = _phase_status(record)
        if status is not None:
            _keep_worst(worst, _check(record, str(record["nodeid"]), status))
    for nodeid, subtests in failed_subtests.items():
        worst[nodeid] = _with_subtests(worst.get(nodeid), nodeid, subtests)
    for nodeid in sorted(started - finished):
        # Only an exception that stops pytest itself skips a teardown; the test did not run to its end.
        _keep_worst(worst, CheckResult(nodeid, CheckStatus.ERROR, "the test never reached its teardown"))
    for nodeid, count in reruns.items():
        check = worst.get(nodeid)
        if check is not None and not check.status.failing:
            worst[nodeid] = replace(check, message=rerun_message(count))
        elif check is not None:
            note = f"failed on every attempt ({count + 1})"
            worst[nodeid] = replace(check, detail="\n".join(part for part in (check.detail, note) if part))
    return tuple(worst.values())


def _last_attempts(tests: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The records that count, and per nodeid the number of its attempts that were superseded.

    An attempt is superseded when one of its own records (not a subtest's) says `rerun` and a later
    attempt of the same test exists; a run that ends on a rerun record keeps it, the worst winning.
    """
    latest: dict[str, int] = {}
    rerun: dict[str, set[int]] = {}
    for record in tests:
        attempt = _int_or_none(record.get("attempt"))
        if attempt is None:
            continue
        nodeid = str(record.get("nodeid"))
        latest[nodeid] = max(latest.get(nodeid, attempt), attempt)
        if record.get("outcome") == "rerun" and record.get("sub") is None:
            rerun.setdefault(nodeid, set()).add(attempt)
    superseded = {nodeid: {a for a in attempts if a < latest[nodeid]} for nodeid, attempts in rerun.items()}
    kept = [r for r in tests if _int_or_none(r.get("attempt")) not in superseded.get(str(r.get("nodeid")), set())]
    return kept, {nodeid: len(attempts) for nodeid, attempts in superseded.items() if attempts}


# What pytest says on the test's own report when only its subtests failed.
_OWN_SUBTEST_MESSAGE = re.compile(r"contains \d+ failed subtests?")


def _with_subtests(own: CheckResult | None, nodeid: str, subtests: list[dict[str, Any]]) -> CheckResult:
    """A test with failing subtests: FAILED (or worse), its own failure first, then the subtests."""
    first = _check(subtests[0], nodeid, CheckStatus.FAILED)
    descriptions = list(dict.fromkeys(_text(r.get("sub")) for r in subtests))
    failed_itself = own is not None and own.status.failing and not _OWN_SUBTEST_MESSAGE.fullmatch(own.message)
    shown = own if failed_itself and own is not None else first
    status = own.status if own is not None and own.status is CheckStatus.ERROR else CheckStatus.FAILED
    message = subtests_message(shown.message if failed_itself else "", descriptions, first.message)
    return CheckResult(nodeid, status, message[:_MESSAGE_MAX], shown.location, shown.detail)


def _keep_worst(worst: dict[str, CheckResult], check: CheckResult) -> None:
    current = worst.get(check.check_id)
    if current is None or _RANK[check.status] > _RANK[current.status]:
        worst[check.check_id] = check


def _phase_status(record: dict[str, Any]) -> CheckStatus | None:
    """A phase report's status: a setup or teardown failure is an ERROR; xfail arrives as skipped."""
    outcome = record.get("outcome")
    if outcome == "passed":
        return CheckStatus.PASSED  # a non-strict xpass too; a strict one arrives as failed
    if outcome == "skipped":
        return CheckStatus.SKIPPED
    if outcome == "failed":
        return CheckStatus.FAILED if record.get("when") not in ("setup", "teardown") else CheckStatus.ERROR
    return None  # e.g. pytest-rerunfailures' "rerun": the final attempt reports the outcome


def _check(record: dict[str, Any], check_id: str, status: CheckStatus) -> CheckResult:
    message = _text(record.get("message"))
    wasxfail = record.get("wasxfail")
    if status is CheckStatus.SKIPPED and wasxfail is not None:
        message = f"xfail: {wasxfail}" if wasxfail else "xfail"
    detail = "\n".join(_text(record.get("detail")).splitlines()[:_DETAIL_LINES])
    return CheckResult(check_id, status, message.split("\n")[0][:_MESSAGE_MAX], _text(record.get("location")),
                       detail)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _broken_reason(records: _Records, checks: tuple[CheckResult, ...], exitstatus: int | None,
                   exit_code: int | None, plugin_file: Path) -> str | None:
    """Why this run is not a result, or None. Checked from the most telling sign down."""
    if records.forged:
        return f"{records.forged} records that onloop did not write reached the report channel"
    if records.foreign:
        first = records.foreign[0]
        return (f"{len(records.foreign)} report(s) about other tests were made while a test ran (the test's own "
                f"code calling pytest's hooks): {_text(first.get('running'))} reported {_text(first.get('nodeid'))}")
    if records.hello is None:
        return ("the onloop pytest plugin did not load: no hello on the report channel "
                f"({_exited(exit_code)}; pytest >= 7 is needed, with the plugin directory on PYTHONPATH "
                "and not disabled by -p no:onloop_gate_report)")
    if not _plugin_is_ours(records.hello, plugin_file):
        return f"the onloop pytest plugin was loaded from {records.hello.get('plugin')!r}, not from {plugin_file}"
    if records.finish is None:
        meaning = _NO_RESULT.get(exit_code) if exit_code is not None else None
        return f"the test run never finished: {meaning or 'killed, os._exit, or a crash'} ({_exited(exit_code)})"
    return _status_reason(records, checks, exitstatus, exit_code)


def _status_reason(records: _Records, checks: tuple[CheckResult, ...], exitstatus: int | None,
                   exit_code: int | None) -> str | None:
    stops = [r for r in records.interrupts if r.get("kind") != "Interrupted"]
    if stops:
        return f"the test run was stopped early: {_text(stops[0].get('kind'))}: {_text(stops[0].get('message'))}"
    if exitstatus in _NO_RESULT:
        return _NO_RESULT[exitstatus]
    if exitstatus == 2 and not records.collect_errors and not _stopped_at_maxfail(records, checks):
        return "the test run was interrupted (exit status 2) without a collection error"
    if exitstatus not in (0, 1, 2):
        return f"pytest reported exit status {exitstatus}, which is no test result"
    if exit_code != exitstatus:
        return (f"the test process {_ended(exit_code)} after pytest reported {exitstatus}: "
                "something ran after the tests")
    if exitstatus == 1 and not any(c.status.failing for c in checks):
        return "pytest counted failed tests (exit status 1) but no test reported a failure"
    return None


def _stopped_at_maxfail(records: _Records, checks: tuple[CheckResult, ...]) -> bool:
    """pytest-xdist ends `-x`/`--maxfail` with exit status 2 where pytest alone ends it with 1.

    Its stop is raised in the controller, where no test code runs, so a test cannot fake it; with a
    failing check present the run is a result like pytest's own exit status 1.
    """
    return any(c.status.failing for c in checks) and any(
        r.get("kind") == "Interrupted" and _text(r.get("message")).startswith("stopping after ")
        for r in records.interrupts)


def _plugin_is_ours(hello: dict[str, Any], plugin_file: Path) -> bool:
    plugin = hello.get("plugin")
    return isinstance(plugin, str) and os.path.realpath(plugin) == os.path.realpath(plugin_file)


def _ended(exit_code: int | None) -> str:
    if exit_code is None:
        return "ended without an exit code"
    if exit_code < 0:
        return f"was killed by signal {-exit_code}"
    return f"exited {exit_code}"


def _exited(exit_code: int | None) -> str:
    if exit_code is None:
        return "no exit code"
    if exit_code < 0:
        return f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"
