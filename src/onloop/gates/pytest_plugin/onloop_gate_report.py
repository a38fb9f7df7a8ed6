"""onloop's pytest plugin: per-test results over a private channel the code under test cannot easily forge.

onloop loads this module into a gate's pytest run with `-p <name>` (a copy of this file under a
random module name, in a directory first on PYTHONPATH, so a module the agent plants cannot shadow it;
standard library and pytest >= 7 only, because it runs inside the project's own interpreter and
virtualenv). Why not junit XML: that file's path is in argv and the code under test
can rewrite it at exit, or tell a re-run apart by its name. This channel has three properties a file
has not:

- the channel is an inherited Unix socket (`ONLOOP_GATE_REPORT_FD`). This module reads the variable
  at import, removes it from `os.environ` and marks the fd non-inheritable, so subprocesses and
  pytest-xdist workers neither see it nor inherit it;
- onloop writes one random nonce into the socket before the process starts, and this module reads it
  at import, before any conftest.py or test module is imported. Every record carries the nonce
  (`"k"`); code that finds the socket later (through /proc/self/fd) finds it empty, and what it writes
  lacks the nonce, so onloop counts it as forged and rejects the run. It cannot read back what this
  module writes either: that travels to onloop's end only;
- a run counts only when its `finish` record arrives and pytest's exit status in it equals the
  process's exit code: a test that calls `os._exit(0)`, or an atexit handler that changes the exit
  code after the tests, makes the run broken, never green.

Records are JSON lines; `t` names the kind: `hello` (at import), `collect` (a failed collector),
`test` (one per phase report; a subtest's report carries its description in `sub`, and under
pytest-rerunfailures every report pytest itself made carries the number of its test's attempt in
`attempt`, so that onloop can tell a superseded attempt's reports from the last one's), `collected`
(the item count),
`plugin` (a plugin registered, with its project-relative file when it lives in the project), `foreign`
(a report about another test than the one running: made by the running test's code),
`interrupted` (pytest.exit, KeyboardInterrupt, pytest's own stop) and `finish` (exit status). Only
the first pytest config binds the channel (the one whose plugin manager loaded this module): an
inline pytester session, or a `pytest.main` that a conftest.py calls, reports nothing. Under
pytest-xdist only the controller holds the fd; the workers' reports reach it through its hooks.
Nothing here raises into pytest: a failed write, or a record that cannot be built, ends reporting
silently, and onloop then sees no `finish`.

The residual limit: the code under test runs in this interpreter, so code written against this
very module (patching it, reading the nonce out of its memory, shadowing its name on sys.path) can
forge a report. onloop's review and its detector of such code cover that case; this module stops
the generic forger (fake records, a rewritten file, an early exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
from collections.abc import Callable, Generator
from typing import Any

import pytest

ENV_FD = "ONLOOP_GATE_REPORT_FD"
_NONCE_MAX = 256
_NONCE_TIMEOUT = 30.0
_DETAIL_LINES = 12
_LINE_MAX = 500
_MESSAGE_MAX = 300
_E_LINE = re.compile(r"^E +(\S.*)$", re.MULTILINE)
_FRAME = re.compile(r"^([^\s:/][^\s:]*):(\d+):", re.MULTILINE)
_XDIST_HEADER = re.compile(r"^\[gw\d+\] .* -- Python .*$", re.MULTILINE)
_SYNTAX_FILE = re.compile(r'File "(?P<path>[^"<][^"]*)", line (?P<line>\d+)')
_SYNTAX_ERROR = re.compile(r"(?:SyntaxError|IndentationError|TabError)\b.*")


class _Channel:
    """The socket and the nonce; after the first failed write it stays silent for good."""

    def __init__(self, sock: socket.socket, nonce: str) -> None:
        self._sock = sock
        self._nonce = nonce
        self._dead = False

    def send(self, record: dict[str, Any]) -> None:
        if self._dead:
            return
        try:
            line = json.dumps({**record, "k": self._nonce}, default=str) + "\n"
            self._sock.sendall(line.encode("utf-8", "replace"), getattr(socket, "MSG_NOSIGNAL", 0))
        except Exception:
            # A closed or broken channel ends reporting; onloop sees no `finish` and rejects the run.
            self.close()

    def close(self) -> None:
        """Stop reporting for good (what follows would be incomplete, so nothing follows)."""
        self._dead = True
        try:
            self._sock.close()
        except OSError:
            return


def _open_channel() -> _Channel | None:
    """The channel named by the environment, or None (inert) when there is none or it is unusable."""
    value = os.environ.pop(ENV_FD, None)
    if value is None:
        return None
    try:
        fd = int(value)
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        nonce = _read_nonce(sock)
    except Exception:
        return None
    return _Channel(sock, nonce) if nonce else None


def _read_nonce(sock: socket.socket) -> str:
    """One line that onloop wrote before the process started; read byte by byte so nothing else is taken."""
    sock.settimeout(_NONCE_TIMEOUT)
    data = b""
    while not data.endswith(b"\n") and len(data) < _NONCE_MAX:
        byte = sock.recv(1)
        if not byte:
            break
        data += byte
    sock.settimeout(None)
    return data.decode("ascii", "replace").strip() if data.endswith(b"\n") else ""


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:_MESSAGE_MAX] if text.strip() else ""


def _relative(path: str, root: str) -> str:
    """`path` relative to the rootdir when it lies inside it (check ids and locations are relative)."""
    absolute = os.path.abspath(path)
    if absolute == root or absolute.startswith(root + os.sep):
        return os.path.relpath(absolute, root)
    return path


def _detail(text: str) -> str:
    """The `E` lines of a traceback (pytest's explanation), else its last lines; a few, each cut short."""
    lines = _E_LINE.findall(text)[:_DETAIL_LINES] or text.strip().splitlines()[-_DETAIL_LINES:]
    return "\n".join(line[:_LINE_MAX] for line in lines)


def _crash(longrepr: object) -> tuple[str, str, str]:
    """(path, line, message) of the exception's crash entry, empty strings where pytest has none."""
    crash = getattr(longrepr, "reprcrash", None)
    if crash is None:
        return "", "", ""
    return (str(getattr(crash, "path", "") or ""), str(getattr(crash, "lineno", "") or ""),
            str(getattr(crash, "message", "") or ""))


def _message(longrepr: object, text: str) -> str:
    """The crash message's first line, else the skip reason, else the first `E` line, else the first line."""
    message = _crash(longrepr)[2]
    if message:
        return _first_line(message)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return _first_line(str(longrepr[2]))
    e_lines = _E_LINE.findall(text)
    # pytest-xdist heads a report's text with the worker it ran on (`[gw0] linux -- Python 3.11.7 ...`).
    return _first_line(e_lines[0]) if e_lines else _first_line(_XDIST_HEADER.sub("", text, count=1))


def _location(longrepr: object, text: str, root: str) -> str:
    """Where the failure points: the crash inside the project, else the last project frame, else ""."""
    crash_path, crash_line, _ = _crash(longrepr)
    if crash_path:
        path = _relative(crash_path, root)
        if not os.path.isabs(path):
            return f"{path}:{crash_line}"
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return f"{_relative(str(longrepr[0]), root)}:{longrepr[1]}"
    frames = _FRAME.findall(text)
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else ""


def _failure_fields(report: pytest.TestReport | pytest.CollectReport, root: str) -> dict[str, str]:
    """Message, location and detail of a report; a report that cannot be described says so instead."""
    try:
        return _describe(report, root)
    except Exception as exc:
        return {"message": f"onloop could not describe this report: {type(exc).__name__}", "location": "",
                "detail": ""}


def _describe(report: pytest.TestReport | pytest.CollectReport, root: str) -> dict[str, str]:
    longrepr = report.longrepr
    if longrepr is None:
        return {"message": "", "location": "", "detail": ""}
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason), and nothing more to show
        return {"message": _message(longrepr, ""), "location": _location(longrepr, "", root), "detail": ""}
    text = report.longreprtext
    syntax = _syntax_error(text)
    if syntax is not None:  # the crash frame is ast.py or importlib; the file that is wrong is this one
        return {"message": syntax[0], "location": f"{_relative(syntax[1], root)}:{syntax[2]}",
                "detail": _detail(text)}
    return {
        "message": _message(longrepr, text),
        "location": _location(longrepr, text, root),
        "detail": _detail(text),
    }


def _syntax_error(text: str) -> tuple[str, str, str] | None:
    """(message, path, line) of a SyntaxError block among the `E` lines: `File "x.py", line 3`, the
    code and a caret, then `SyntaxError: ...` (or IndentationError, TabError)."""
    e_lines = _E_LINE.findall(text)
    for index, line in enumerate(e_lines):
        where = _SYNTAX_FILE.fullmatch(line.strip())
        if where is None:
            continue
        for after in e_lines[index + 1:index + 6]:
            if _SYNTAX_ERROR.fullmatch(after.strip()):
                return after.strip()[:_MESSAGE_MAX], where["path"], where["line"]
    return None


def _subtest(report: pytest.TestReport) -> str | None:
    """A subtest report's description as pytest prints it (`[msg] (i=1)`), or None for a test's own
    report. pytest 9's SubtestReport and the pytest-subtests plugin's both carry a `context`."""
    context = getattr(report, "context", None)
    if context is None or not hasattr(context, "kwargs"):
        return None
    parts = []
    if getattr(context, "msg", None) is not None:
        parts.append(f"[{context.msg}]")
    kwargs = dict(getattr(context, "kwargs", None) or {})
    if kwargs:
        parts.append("(" + ", ".join(f"{key}={value}" for key, value in kwargs.items()) + ")")
    return " ".join(parts) or "(<subtest>)"


def _project_plugin(plugin: object, root: str) -> str | None:
    """The project-relative file of a plugin whose code lives under the rootdir, else None (installed
    plugins, pytest's own and this reporter are the environment, not the project). A plugin is placed
    by its module's file and by the code of every hook it implements: an object of a standard-library
    type (a SimpleNamespace of functions) is the project's if one of its hook functions is."""
    if plugin is sys.modules.get(__name__) or isinstance(plugin, _Reporter):
        return None
    places = [getattr(plugin, "__file__", None), getattr(sys.modules.get(type(plugin).__module__), "__file__", None)]
    for name in dir(plugin):
        if name.startswith("pytest_"):
            places.append(_code_file(getattr(plugin, name, None)))
    for where in places:
        if isinstance(where, str):
            path = _relative(where, root)
            if not os.path.isabs(path):
                return path
    return None


def _code_file(function: object) -> str | None:
    """The file a callable's code was compiled from, through wrappers and partials."""
    for _ in range(10):
        code = getattr(function, "__code__", None)
        if code is not None:
            return str(code.co_filename)
        function = getattr(function, "__wrapped__", None) or getattr(function, "func", None) or getattr(
            function, "__func__", None)
        if function is None:
            return None
    return None


def _item_location(report: pytest.TestReport) -> str:
    path, line, _ = report.location
    return f"{path}:{line + 1}" if line is not None else path


def _collect_record(report: pytest.CollectReport, root: str) -> dict[str, Any]:
    return {"t": "collect", "nodeid": report.nodeid, "outcome": "error", **_failure_fields(report, root)}


def _test_record(report: pytest.TestReport, root: str, attempt: int | None) -> dict[str, Any]:
    fields = _failure_fields(report, root)
    fields["location"] = fields["location"] or _item_location(report)
    wasxfail = getattr(report, "wasxfail", None)
    record: dict[str, Any] = {"t": "test", "nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                              "wasxfail": None if wasxfail is None else str(wasxfail), **fields}
    sub = _subtest(report)
    if sub is not None:
        record["sub"] = sub
    if attempt is not None:
        record["attempt"] = attempt
    return record


# The attempt a report belongs to, set on the reports pytest makes (`pytest_runtest_makereport`, in the
# process that ran the test: pytest-xdist carries the attribute to the controller with the report).
_ATTEMPT = "_onloop_attempt"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under pytest-rerunfailures, the attempt of each report pytest itself made, from the count the
    plugin keeps on the item. Only these reports can say that an attempt was superseded: a report
    handed to `pytest_runtest_logreport` by the code under test carries none, so it can neither
    supersede a real failure nor be superseded (the worst outcome wins over it as over any record)."""
    outcome = yield
    if item.config.pluginmanager.hasplugin("rerunfailures"):
        with contextlib.suppress(Exception):
            setattr(outcome.get_result(), _ATTEMPT, int(getattr(item, "execution_count", 1) or 1))


class _Reporter:
    """Registered on the first config only, so its hooks never see another session's reports."""

    def __init__(self, channel: _Channel, config: pytest.Config) -> None:
        self._channel = channel
        self._root = str(config.rootpath)
        # The item pytest is running in this process (None between items, and always in a pytest-xdist
        # controller, which runs none: its reports come from the workers).
        self._running: str | None = None

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
        self._running = item.nodeid
        try:
            yield
        finally:
            self._running = None

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._report(lambda: _collect_record(report, self._root))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._running is not None and report.nodeid != self._running:
            # While one test runs, pytest reports only that test: a report about another one was made
            # by the running test's own code (through pytest's hooks), whatever it says.
            self._report(lambda: {"t": "foreign", "nodeid": str(report.nodeid), "running": self._running})
            return
        attempt = getattr(report, _ATTEMPT, None)
        self._report(lambda: _test_record(report, self._root, attempt if isinstance(attempt, int) else None))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._report(lambda: {"t": "collected", "count": len(session.items)})

    def pytest_plugin_registered(self, plugin: object) -> None:
        """Every plugin whose code lives in the project (a conftest.py, a module named by
        `pytest_plugins`), by its path: onloop refuses a run that loads one the base commit did not.
        A historic hook, so the plugins registered before this reporter are replayed to it."""
        try:
            found = _project_plugin(plugin, self._root)
        except Exception:
            found = "<a plugin onloop could not place>"
        if found is not None:
            self._report(lambda: {"t": "plugin", "id": found})

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self._report(lambda: {"t": "interrupted", "kind": excinfo.typename,
                              "message": _first_line(str(excinfo.value))})

    # The outermost wrapper reports after every other implementation ran, so a plugin that sets the
    # exit status in its own sessionfinish is seen (old-style wrapper: pytest 7's pluggy has no other).
    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        yield
        self._report(lambda: {"t": "finish", "exitstatus": int(session.exitstatus),
                              "testscollected": session.testscollected})

    def _report(self, build: Callable[[], dict[str, Any]]) -> None:
        """Send one record; never raise into pytest.

        A record that cannot be built would leave a gap onloop cannot see (a failing call phase gone
        missing reads as a pass), so it ends reporting instead: without `finish` the run is broken.
        """
        try:
            record = build()
        except Exception:
            self._channel.close()
            return
        self._channel.send(record)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Remember the plugin manager that loaded this module: the one of the `-p` on onloop's argv.

    pytest calls this as soon as it registers the module, which for the outer run happens while it
    parses its own argv, before any conftest.py is imported. So a pytest session that project code
    starts itself (a conftest.py calling `pytest.main`, a pytester inline run) can never be the one
    that reports, even if it starts before the outer session is configured.
    """
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = pluginmanager


def pytest_configure(config: pytest.Config) -> None:
    """Start reporting for the config of the first plugin manager; every other config stays silent."""
    global _BOUND
    if _CHANNEL is None or _BOUND or config.pluginmanager is not _MANAGER:
        return
    _BOUND = True
    config.pluginmanager.register(_Reporter(_CHANNEL, config), "onloop-gate-reporter")


def _hello(channel: _Channel | None) -> None:
    if channel is not None:
        channel.send({"t": "hello", "pytest": pytest.__version__, "plugin": os.path.realpath(__file__)})


_CHANNEL = _open_channel()
_MANAGER: pytest.PytestPluginManager | None = None
_BOUND = False
_hello(_CHANNEL)
