"""The pytest report channel end to end: real pytest runs (subprocesses, no mocks) on throwaway projects.

Each test writes a small project into tmp_path, runs the venv's pytest through a `PytestChannel`
exactly as a gate would, and looks at the aggregated `PytestReport`. The hostile cases are written
the way a generic forger would write them: fake records through /proc/self/fd, an early `os._exit`,
an atexit handler, `pytest.exit(returncode=0)`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from onloop.errors import SandboxUnavailable
from onloop.gates.checks import CheckResult, CheckStatus
from onloop.gates.report import (
    ENV_FD,
    PLUGIN_DIR,
    PLUGIN_FILE,
    PytestChannel,
    PytestReport,
    parse_report,
    wrap_pytest_argv,
)
from onloop.policy.model import Policy
from onloop.policy.sandbox import BwrapSandbox
from onloop.process import ProcessSpec, run_process

BIN = Path(sys.executable).parent
PYTEST = str(BIN / "pytest")
P, F, E, S = CheckStatus.PASSED, CheckStatus.FAILED, CheckStatus.ERROR, CheckStatus.SKIPPED


@dataclass(frozen=True)
class Run:
    report: PytestReport
    exit_code: int
    output: str

    @property
    def statuses(self) -> dict[str, CheckStatus]:
        return {c.check_id: c.status for c in self.report.checks}

    def check(self, check_id: str) -> CheckResult:
        return next(c for c in self.report.checks if c.check_id == check_id)


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    # A pytest.ini pins the rootdir to the project, whatever lies above tmp_path.
    for rel, content in {"pytest.ini": "[pytest]\n", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def base_env(**extra: str) -> dict[str, str]:
    """The outer test session's environment without its own pytest variables (a gate starts clean)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in (ENV_FD, "PYTHONPATH")}
    return {**env, "COLUMNS": "120", **extra}


def run_pytest(project: Path, *args: str, argv: Sequence[str] | None = None, channel: PytestChannel | None = None,
               env: dict[str, str] | None = None) -> Run:
    with channel or PytestChannel() as chan:
        command = chan.wrap_argv(argv or [PYTEST, "-q", "-p", "no:cacheprovider", *args])
        assert command is not None
        chan.start()
        proc = subprocess.Popen(command, cwd=project, env={**(env or base_env()), **chan.env(None)},
                                pass_fds=(chan.child_fd,), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        chan.after_spawn()
        output, _ = proc.communicate(timeout=180)
        return Run(chan.finish(proc.returncode), proc.returncode, output)


# -- outcomes ----------------------------------------------------------------------------------

OUTCOMES = """\
import pytest


def test_pass():
    pass


def test_fail():
    assert 1 + 1 == 3


@pytest.fixture
def broken_setup():
    raise RuntimeError("setup exploded")


def test_setup_error(broken_setup):
    pass


@pytest.fixture
def broken_teardown():
    yield
    raise ValueError("teardown exploded")


def test_teardown_error(broken_teardown):
    pass


def test_fail_and_teardown_error(broken_teardown):
    assert False, "call failed first"


@pytest.mark.skip(reason="later")
def test_skip():
    pass


@pytest.fixture
def skipping():
    pytest.skip("no database here")


def test_skip_in_setup(skipping):
    pass


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False


@pytest.mark.xfail(reason="fixed already?", strict=True)
def test_xpass_strict():
    pass


@pytest.mark.xfail(reason="maybe fixed")
def test_xpass_lax():
    pass
"""


def test_every_outcome_of_every_phase(tmp_path: Path) -> None:
    run = run_pytest(write(tmp_path / "p", {"tests/test_outcomes.py": OUTCOMES}))
    ids = "tests/test_outcomes.py::"
    assert run.statuses == {
        ids + "test_pass": P, ids + "test_fail": F, ids + "test_setup_error": E, ids + "test_teardown_error": E,
        ids + "test_fail_and_teardown_error": E, ids + "test_skip": S, ids + "test_skip_in_setup": S,
        ids + "test_xfail": S, ids + "test_xpass_strict": F, ids + "test_xpass_lax": P,
    }, run.output
    report = run.report
    assert report.broken is None and report.finished and report.forged == 0
    assert (report.exitstatus, run.exit_code, report.collected) == (1, 1, 10)
    fail = run.check(ids + "test_fail")
    assert fail.message == "assert (1 + 1) == 3"
    assert fail.location == "tests/test_outcomes.py:9"
    assert "assert (1 + 1) == 3" in fail.detail
    setup = run.check(ids + "test_setup_error")
    assert setup.message == "RuntimeError: setup exploded"
    assert setup.location == "tests/test_outcomes.py:14"
    assert run.check(ids + "test_xfail").message == "xfail: known bug"
    assert "XPASS(strict)" in run.check(ids + "test_xpass_strict").message
    assert run.check(ids + "test_skip").message == "Skipped: later"


def test_a_module_importing_what_does_not_exist_is_an_error_check(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "pytest.ini": "[pytest]\npythonpath = .\n",
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
        "tests/test_new.py": "from calc import multiply\n\n\ndef test_multiply():\n    assert multiply(2, 3) == 6\n",
    })
    run = run_pytest(project)
    assert run.exit_code == 2 and run.report.exitstatus == 2
    assert run.report.broken is None, run.output
    assert run.statuses == {"tests/test_new.py": E}
    error = run.check("tests/test_new.py")
    assert "cannot import name 'multiply'" in error.message
    assert "tests/test_new.py:1" in error.location


# -- runs that are no result -------------------------------------------------------------------


def test_no_tests_collected_is_broken(tmp_path: Path) -> None:
    run = run_pytest(write(tmp_path / "p", {"tests/test_empty.py": "VALUE = 1\n"}))
    assert run.exit_code == 5
    assert run.report.broken == "pytest collected no tests (exit status 5)"
    assert run.report.checks == ()


def test_a_bad_option_is_broken(tmp_path: Path) -> None:
    run = run_pytest(write(tmp_path / "p", {"test_a.py": "def test_a():\n    pass\n"}), "--no-such-option")
    assert run.exit_code == 4
    assert run.report.broken is not None and "usage error" in run.report.broken
    assert run.report.checks == ()


def test_an_import_error_in_conftest_is_broken(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"conftest.py": "import no_such_module\n",
                                     "test_a.py": "def test_a():\n    pass\n"})
    run = run_pytest(project)
    assert run.exit_code == 4
    assert run.report.broken is not None and "usage error" in run.report.broken
    assert "conftest.py" in run.report.broken


def test_os_exit_in_a_test_is_broken(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"test_a.py": (
        "import os\n\n\ndef test_fails():\n    assert False\n\n\ndef test_leaves():\n    os._exit(0)\n")})
    run = run_pytest(project)
    assert run.exit_code == 0
    assert not run.report.finished
    assert run.report.broken == "the test run never finished: killed, os._exit, or a crash (exit code 0)"


def test_an_atexit_handler_changing_the_exit_code_is_broken(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"test_a.py": (
        "import atexit\nimport os\n\natexit.register(os._exit, 0)\n\n\ndef test_fails():\n    assert False\n")})
    run = run_pytest(project)
    assert run.exit_code == 0 and run.report.exitstatus == 1
    assert run.report.broken == "the test process exited 0 after pytest reported 1: something ran after the tests"
    assert run.statuses == {"test_a.py::test_fails": F}


def test_pytest_exit_with_code_zero_in_a_test_is_broken(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"test_a.py": (
        "import pytest\n\n\ndef test_fails():\n    assert False\n\n\n"
        "def test_stops():\n    pytest.exit('all good, honest', returncode=0)\n")})
    run = run_pytest(project)
    assert run.exit_code == 0 and run.report.exitstatus == 0
    assert run.report.broken == "the test run was stopped early: Exit: all good, honest"
    assert run.statuses["test_a.py::test_stops"] is E  # it never reached its teardown


# -- forgers and leaks -------------------------------------------------------------------------

FORGER = """\
import json
import os


def _sockets():
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                yield int(name)
        except OSError:
            continue


def test_forger():
    lines = []
    for when in ("setup", "call", "teardown"):
        lines.append({"t": "test", "nodeid": "test_forge.py::test_forger", "when": when, "outcome": "passed"})
    lines.append({"t": "test", "k": "0" * 32, "nodeid": "test_forge.py::test_forger", "when": "call",
                  "outcome": "passed"})
    data = "".join(json.dumps(line) + "\\n" for line in lines).encode()
    found = list(_sockets())
    assert found, "the forger found no socket"
    for fd in found:  # every socket the process holds (another plugin may hold one of its own)
        try:
            os.write(fd, data)
        except OSError:
            pass
    assert False, "really failing"
"""


def test_forged_records_through_proc_self_fd_are_counted_and_the_failure_stands(tmp_path: Path) -> None:
    run = run_pytest(write(tmp_path / "p", {"test_forge.py": FORGER}))
    assert run.report.forged == 4
    assert run.report.broken == "4 records that onloop did not write reached the report channel"
    assert run.statuses == {"test_forge.py::test_forger": F}, run.output


SPAWNER = """\
import json
import os
import subprocess
import sys

CHILD = '''
import json, os
links = []
for name in os.listdir("/proc/self/fd"):
    try:
        links.append(os.readlink("/proc/self/fd/" + name))
    except OSError:
        pass
print(json.dumps({"env": os.environ.get("ONLOOP_GATE_REPORT_FD"), "links": links}))
'''


def _channel_fd():
    with open("/proc/self/environ", "rb") as handle:
        entries = handle.read().split(b"\\0")
    return next(int(e.split(b"=", 1)[1]) for e in entries if e.startswith(b"ONLOOP_GATE_REPORT_FD="))


def test_child_sees_neither_variable_nor_fd():
    link = os.readlink(f"/proc/self/fd/{_channel_fd()}")
    assert link.startswith("socket:")
    assert "ONLOOP_GATE_REPORT_FD" not in os.environ
    # close_fds=False: even a child that keeps every inheritable fd does not get the channel.
    done = subprocess.run([sys.executable, "-c", CHILD], close_fds=False, capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen["env"] is None
    assert link not in seen["links"]
    # os.system's shell: nothing at the channel's number, or not that socket.
    fd = _channel_fd()
    assert os.system(f"test \\"$(readlink /proc/self/fd/{fd} 2>/dev/null)\\" != '{link}'") == 0
"""


def test_a_subprocess_sees_neither_the_variable_nor_the_fd(tmp_path: Path) -> None:
    run = run_pytest(write(tmp_path / "p", {"test_spawn.py": SPAWNER}))
    assert run.report.broken is None
    assert run.statuses == {"test_spawn.py::test_child_sees_neither_variable_nor_fd": P}, run.output


DUMPER = """\
import json
import os
import sys
from pathlib import Path


def test_dump():
    out = Path(os.environ["DUMP_DIR"])
    with open("/proc/self/environ", "rb") as handle:
        initial = sorted(e.decode() for e in handle.read().split(b"\\0") if e)
    with open("/proc/self/cmdline", "rb") as handle:
        cmdline = handle.read().decode().split("\\0")
    state = {"argv": sys.argv, "environ": dict(os.environ), "initial": initial, "cmdline": cmdline}
    (out / f"{len(list(out.iterdir()))}.json").write_text(json.dumps(state, sort_keys=True))
"""


def test_a_rerun_sees_the_same_argv_and_environment_apart_from_the_fd_number(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"test_dump.py": DUMPER})
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    env = base_env(DUMP_DIR=str(dumps))
    runs = [run_pytest(project, env=env) for _ in range(2)]
    assert all(r.report.broken is None and r.statuses == {"test_dump.py::test_dump": P} for r in runs)
    first, second = (json.loads((dumps / f"{n}.json").read_text()) for n in range(2))
    assert ENV_FD not in first["environ"]
    for state in (first, second):
        state["initial"] = [e if not e.startswith(ENV_FD + "=") else ENV_FD + "=N" for e in state["initial"]]
    assert first == second
    argv = [PYTEST, "-q"]
    with PytestChannel() as one, PytestChannel() as two:
        assert one.wrap_argv(argv) == two.wrap_argv(argv)
        assert {**one.env("x"), ENV_FD: "N"} == {**two.env("x"), ENV_FD: "N"}


# -- pytest-xdist, pytester --------------------------------------------------------------------


def test_xdist_reports_every_test_through_the_controller(tmp_path: Path) -> None:
    files = {f"tests/test_m{n}.py": "".join(
        f"def test_ok_{i}():\n    pass\n\n\ndef test_bad_{i}():\n    assert {i} == -1\n\n\n" for i in range(5))
        for n in range(3)}
    run = run_pytest(write(tmp_path / "p", files), "-n", "2")
    expected = {f"tests/test_m{n}.py::test_{kind}_{i}": (P if kind == "ok" else F)
                for n in range(3) for i in range(5) for kind in ("ok", "bad")}
    assert run.statuses == expected, run.output
    assert run.report.broken is None and run.report.exitstatus == 1
    assert run.report.collected == 30  # the controller collects nothing; its session counts the workers'
    assert run.check("tests/test_m0.py::test_bad_3").message == "assert 3 == -1"


def test_xdist_stopping_at_maxfail_is_a_result(tmp_path: Path) -> None:
    tests = "def test_ok():\n    pass\n\n\ndef test_bad():\n    assert False\n"
    run = run_pytest(write(tmp_path / "p", {"test_a.py": tests}), "-n", "2", "-x")
    assert run.exit_code == 2  # pytest alone says 1 here; xdist's controller stops with Interrupted
    assert run.report.broken is None, run.output
    assert run.statuses["test_a.py::test_bad"] is F


def test_xdist_collection_error_is_an_error_check(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "tests/test_ok.py": "def test_ok():\n    pass\n",
        "tests/test_new.py": "from calc import multiply\n\n\ndef test_multiply():\n    pass\n",
    })
    run = run_pytest(project, "-n", "2")
    assert run.report.broken is None, (run.report.broken, run.output)
    assert run.statuses["tests/test_new.py"] is E


def test_an_inline_pytester_run_does_not_report_into_the_channel(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "conftest.py": "pytest_plugins = ['pytester']\n",
        "test_outer.py": (
            "def test_outer(pytester):\n"
            "    pytester.makepyfile(test_inner='def test_inner():\\n    assert False\\n')\n"
            "    result = pytester.inline_run('-p', 'onloop_gate_report', '-p', 'no:cacheprovider')\n"
            "    result.assertoutcome(failed=1)\n"
        ),
    })
    run = run_pytest(project)
    assert run.statuses == {"test_outer.py::test_outer": P}, run.output
    assert run.report.broken is None and run.report.exitstatus == 0 and run.report.collected == 1


def test_a_pytest_main_started_by_conftest_before_the_real_session_does_not_report(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {
        "conftest.py": (
            "from pathlib import Path\n\nimport pytest\n\n"
            "code = pytest.main(['-q', '-p', 'onloop_gate_report', '-p', 'no:cacheprovider', '--noconftest',\n"
            "                    '-c', 'decoy/pytest.ini', 'decoy'])\n"
            "Path('decoy.exit').write_text(str(int(code)))\n"
            "collect_ignore = ['decoy']\n"
        ),
        "decoy/pytest.ini": "[pytest]\n",
        "decoy/test_decoy.py": "def test_decoy():\n    pass\n",
        "test_real.py": "def test_real():\n    assert False\n",
    })
    run = run_pytest(project)
    assert (project / "decoy.exit").read_text() == "0"  # the decoy did run, inside the real session's process
    assert run.statuses == {"test_real.py::test_real": F}, run.output
    assert run.report.broken is None and run.report.exitstatus == 1


# -- the channel itself ------------------------------------------------------------------------


def test_without_the_variable_the_plugin_is_inert(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"test_a.py": "def test_a():\n    pass\n"})
    for extra in ({}, {ENV_FD: "987"}):
        env = base_env(PYTHONPATH=str(PLUGIN_DIR), **extra)
        done = subprocess.run([PYTEST, "-q", "-p", "no:cacheprovider", "-p", "onloop_gate_report"], cwd=project,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_a_flood_past_the_byte_cap_is_broken_and_pytest_still_ends_normally(tmp_path: Path) -> None:
    tests = "".join(f"def test_{i}():\n    pass\n\n\n" for i in range(200))
    run = run_pytest(write(tmp_path / "p", {"test_many.py": tests}), channel=PytestChannel(byte_cap=4096))
    assert run.exit_code == 0 and "200 passed" in run.output
    assert run.report.broken == "the report channel carried more than 4096 bytes"


LINGERER = """\
import os
import subprocess
from pathlib import Path


def _link(name):
    try:
        return os.readlink(f"/proc/self/fd/{name}")
    except OSError:
        return ""


def test_leaves_a_holder_behind():
    # Every socket the process holds (another plugin, such as pytest-rerunfailures, may hold one too).
    fds = tuple(int(n) for n in os.listdir("/proc/self/fd") if _link(n).startswith("socket:"))
    holder = subprocess.Popen(["sleep", "60"], pass_fds=fds, start_new_session=True)
    Path("holder.pid").write_text(str(holder.pid))
"""


def test_a_process_holding_the_channel_after_the_run_is_broken(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"test_linger.py": LINGERER})
    try:
        run = run_pytest(project, channel=PytestChannel(close_timeout=1.0))
    finally:
        pid_file = project / "holder.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), 9)
    assert run.exit_code == 0 and run.report.finished
    assert run.report.broken == ("the report channel was still open 1s after the test process exited: "
                                 "a leftover process holds it")


def test_the_plugin_directory_holds_only_the_plugin() -> None:
    assert PLUGIN_FILE.is_file()
    assert {p.name for p in PLUGIN_DIR.iterdir() if p.name != "__pycache__"} == {"onloop_gate_report.py"}


@pytest.mark.parametrize(("argv", "expected"), [
    (["pytest", "-q"], ["pytest", "-p", "onloop_gate_report", "-q"]),
    ([".venv/bin/pytest"], [".venv/bin/pytest", "-p", "onloop_gate_report"]),
    (["py.test", "x"], ["py.test", "-p", "onloop_gate_report", "x"]),
    (["python", "-m", "pytest", "-x"], ["python", "-m", "pytest", "-p", "onloop_gate_report", "-x"]),
    (["uv", "run", "pytest", "tests"], ["uv", "run", "pytest", "-p", "onloop_gate_report", "tests"]),
    (["uv", "run", "--with", "pytest", "pytest"], ["uv", "run", "--with", "pytest", "pytest", "-p",
                                                   "onloop_gate_report"]),
    (["uv", "run", "python", "-m", "pytest"], ["uv", "run", "python", "-m", "pytest", "-p", "onloop_gate_report"]),
    (["make", "test"], None),
    (["python", "-m", "unittest"], None),
    (["cargo", "test"], None),
])
def test_wrap_argv_finds_the_pytest_program(argv: list[str], expected: list[str] | None) -> None:
    wrapped = wrap_pytest_argv(argv)
    assert wrapped == (tuple(expected) if expected is not None else None)


# -- aggregation rules on hand-written streams -------------------------------------------------

NONCE = "ab" * 16


def stream(*records: dict[str, object], nonce: str = NONCE) -> bytes:
    hello = {"t": "hello", "pytest": "9", "plugin": str(PLUGIN_FILE)}
    return b"".join(json.dumps({**r, "k": nonce}).encode() + b"\n" for r in (hello, *records))


def phases(nodeid: str, *outcomes: str) -> list[dict[str, object]]:
    return [{"t": "test", "nodeid": nodeid, "when": when, "outcome": outcome}
            for when, outcome in zip(("setup", "call", "teardown"), outcomes, strict=False)]


def test_the_worst_outcome_wins_across_duplicate_records() -> None:
    data = stream(*phases("t.py::a", "passed", "failed", "passed"), *phases("t.py::a", "passed", "passed", "passed"),
                  {"t": "finish", "exitstatus": 1, "testscollected": 1})
    report = parse_report(data, NONCE, 1)
    assert [(c.check_id, c.status) for c in report.checks] == [("t.py::a", F)]
    assert report.broken is None


def test_records_with_a_wrong_nonce_or_no_json_are_forged() -> None:
    data = stream(*phases("t.py::a", "passed", "passed", "passed"), {"t": "finish", "exitstatus": 0})
    data += stream({"t": "finish", "exitstatus": 0}, nonce="cd" * 16) + b"not json\n" + b"[1]\n"
    report = parse_report(data, NONCE, 0)
    assert report.forged == 4  # the second stream's hello and finish, the garbage, the list
    assert report.broken == "4 records that onloop did not write reached the report channel"


def test_an_unterminated_line_is_forged_only_after_the_finish() -> None:
    unfinished = stream(*phases("t.py::a", "passed")) + b'{"t": "te'
    assert parse_report(unfinished, NONCE, -9).forged == 0
    assert parse_report(unfinished, NONCE, -9).broken == (
        "the test run never finished: killed, os._exit, or a crash (killed by signal 9)")
    finished = stream({"t": "finish", "exitstatus": 0}) + b"garbage"
    assert parse_report(finished, NONCE, 0).forged == 1


def test_a_plugin_loaded_from_elsewhere_is_broken() -> None:
    data = json.dumps({"t": "hello", "plugin": "/work/tree/onloop_gate_report.py", "k": NONCE}).encode() + b"\n"
    data += json.dumps({"t": "finish", "exitstatus": 0, "k": NONCE}).encode() + b"\n"
    broken = parse_report(data, NONCE, 0).broken
    assert broken is not None and broken.startswith("the onloop pytest plugin was loaded from '/work/tree/")


def test_no_hello_means_the_plugin_did_not_load() -> None:
    broken = parse_report(b"", NONCE, 4).broken
    assert broken is not None and broken.startswith("the onloop pytest plugin did not load: ")


def test_interrupted_without_collection_errors_is_broken() -> None:
    data = stream(*phases("t.py::a", "passed", "passed", "passed"),
                  {"t": "interrupted", "kind": "KeyboardInterrupt", "message": ""},
                  {"t": "finish", "exitstatus": 2})
    assert parse_report(data, NONCE, 2).broken == "the test run was stopped early: KeyboardInterrupt: "
    data = stream(*phases("t.py::a", "passed", "passed", "passed"), {"t": "finish", "exitstatus": 2})
    assert parse_report(data, NONCE, 2).broken == (
        "the test run was interrupted (exit status 2) without a collection error")


# -- through onloop's bubblewrap sandbox -------------------------------------------------------


def test_the_channel_works_through_the_bubblewrap_sandbox(tmp_path: Path) -> None:
    project = write(tmp_path / "p", {"tests/test_a.py": (
        "def test_ok():\n    pass\n\n\ndef test_bad():\n    assert 'a' == 'b'\n")})
    sandbox = BwrapSandbox(Policy(), worktree=project, git_dir=None)
    try:
        sandbox.check()
    except SandboxUnavailable as exc:
        pytest.skip(f"bubblewrap is not usable here: {exc}")
    with sandbox, PytestChannel() as channel:
        argv = channel.wrap_argv([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"])
        assert argv is not None
        spec = ProcessSpec(argv=argv, cwd=project, env={"COLUMNS": "120", **channel.env(None)}, timeout=120,
                           pass_fds=(channel.child_fd,))
        channel.start()
        result = run_process(spec, sandbox, log_path=tmp_path / "gate.log")
        report = channel.finish(result.exit_code)
    output = (tmp_path / "gate.log").read_text()
    assert report.broken is None, (report.broken, output)
    assert {c.check_id: c.status for c in report.checks} == {"tests/test_a.py::test_ok": P,
                                                             "tests/test_a.py::test_bad": F}
    assert result.exit_code == 1 == report.exitstatus
