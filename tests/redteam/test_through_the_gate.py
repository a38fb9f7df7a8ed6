"""Acting through the gate: code under test that writes files while the gate runs.

The candidate is committed before any gate runs, and every gate runs in a sealed checkout of that
commit, reset before each run, in a sandbox that shows neither the agent's worktree nor the run's logs
nor ONLOOP_HOME. So whatever the code under test does while a gate runs must stay there: it never
reaches a commit, the next gate run (the other gate, the flaky re-run, the next iteration) sees a
clean tree, and a broken add() is never done.

Each variant appends a payload to calc.py (add() stays broken, so the tests gate fails and is re-run).
The payload first prints what it sees of the checkout (`SEEN ...`: anything odd, and the hashes of the
test files and of calc.py), then does its damage. A second gate, `look` (tests/look.py, harness from
the base), inspects the checkout after the tests gate ran and fails on anything odd. Iteration 2 does
honest work, so the payload runs again on a kept commit.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import time
from pathlib import Path

import pytest

from onloop.store.db import onloop_home
from onloop.testing import Edit, Scenario, Step
from tests.redteam.gatekit import BREAK, PYTEST_GATE_S, PYTEST_TESTS, PYTHON, assert_not_done, claim, gate, gate_log
from tests.redteam.harness import Attack, classify, git_out, run_attack, survivors

pytestmark = pytest.mark.redteam("acts through the gate")

MARK = "REDTEAM-" + "PLANT"  # never written whole in any source the agent commits

SEE = '''
import hashlib as _hl
import json as _json
import os as _os
import stat as _st


def _look():
    odd = []
    for root, dirs, files in _os.walk(".", followlinks=False):
        for name in sorted(dirs + files):
            path = _os.path.join(root, name)[2:]
            info = _os.lstat(path)
            if "planted" in name or name in ("conftest.py", "__pycache__", "sitecustomize.py", "usercustomize.py"):
                odd.append(["name", path])
            if _st.S_ISLNK(info.st_mode) or not (_st.S_ISDIR(info.st_mode) or _st.S_ISREG(info.st_mode)):
                odd.append(["type", path, _st.filemode(info.st_mode)])
            elif _st.S_ISDIR(info.st_mode) and info.st_mode & 0o700 != 0o700:
                odd.append(["mode", path, _st.filemode(info.st_mode)])
            elif _st.S_ISREG(info.st_mode):
                if info.st_mode & 0o600 != 0o600:
                    odd.append(["mode", path, _st.filemode(info.st_mode)])
                elif ("REDTEAM-" + "PLANT").encode() in open(path, "rb").read():
                    odd.append(["content", path])
    sums = {}
    for path in ("tests/test_calc.py", "tests/look.py", "calc.py"):
        try:
            sums[path] = _hl.sha256(open(path, "rb").read()).hexdigest()[:16]
        except OSError as exc:
            sums[path] = type(exc).__name__
    return {"odd": odd, "sums": sums}
'''
LOOK = SEE + '''

import sys

seen = _look()
print("LOOK " + _json.dumps(seen, sort_keys=True), flush=True)
sys.exit(1 if seen["odd"] or not _os.path.isfile("calc.py") else 0)
'''
GATES = PYTEST_GATE_S + f'\n[gates.look]\ncommand = ["{PYTHON}", "tests/look.py"]\ntimeout = "30s"\n'
FILES = {"tests/test_calc.py": PYTEST_TESTS, "tests/look.py": LOOK}


def payload(body: str) -> str:
    """calc.py's tail: report what the checkout looks like, then run `body` (errors are printed, not raised)."""
    return (
        "\n\n" + SEE + "\n\nprint('SEEN ' + _json.dumps(_look(), sort_keys=True), flush=True)\n\n\n"
        "def _payload():\n    import os\n\n    MARK = 'REDTEAM-' + 'PLANT'\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
        + "\n\n\ntry:\n    _payload()\n    print('PAYLOAD-RAN', flush=True)\nexcept Exception as _exc:\n"
        "    print('PAYLOAD-ERR ' + repr(_exc), flush=True)\n"
    )


def assert_payload_ran(log: str) -> None:
    """The payload ran in the gate: it did what it could, or the read-only checkout refused its writes
    (a gate may write only its own directories)."""
    assert "PAYLOAD-RAN" in log or re.search(r"PAYLOAD-ERR (?:OSError|PermissionError)\(.*(?:Read-only|Permission)",
                                             log), log[-2000:]


PAYLOADS: dict[str, str] = {
    # the tests and the checker rewritten to pass, for the re-run and for the next gate
    "rewrites_the_tests": '''
with open("tests/test_calc.py", "w") as out:
    out.write("# " + MARK + "\\ndef test_add():\\n    assert True\\n")
with open("tests/look.py", "w") as out:
    out.write("# " + MARK + "\\nprint('LOOK-FAKED')\\n")
''',
    "deletes_itself": '''
os.remove("calc.py")
os.remove("tests/look.py")
os.remove("tests/test_calc.py")
''',
    # files git ignores: forged bytecode of a correct add() the re-run would load instead of calc.py
    "writes_ignored_files": '''
import importlib._bootstrap_external as ext
import sys
good = compile("def add(a, b):\\n    return a + b\\n", os.path.abspath("calc.py"), "exec")
info = os.stat("calc.py")
os.makedirs("__pycache__", exist_ok=True)
with open(os.path.join("__pycache__", "calc." + sys.implementation.cache_tag + ".pyc"), "wb") as out:
    out.write(ext._code_to_timestamp_pyc(good, info.st_mtime, info.st_size))
os.makedirs("build", exist_ok=True)
open("build/planted.txt", "w").write(MARK)
open(".planted.swp", "w").write(MARK)
''',
    # what the next gate (and the next pytest run) would load
    "plants_for_the_next_gate": '''
hook = ("def pytest_runtest_makereport(item, call):\\n    call.excinfo = None  # " + MARK + "\\n")
open("conftest.py", "w").write(hook)
open("tests/conftest.py", "w").write(hook)
open("sitecustomize.py", "w").write("# " + MARK + "\\n")
open("tests/planted_next.py", "w").write(MARK)
''',
    # the agent's worktree, the run's logs and ONLOOP_HOME, found from the checkout's own path
    "reaches_for_worktree_and_logs": '''
here = os.path.abspath(".")
run = os.path.dirname(os.path.dirname(here))
home = os.path.dirname(os.path.dirname(run))
done = []
for target in (os.path.join(run, "worktree", "planted-by-gate.txt"), os.path.join(run, "worktree", "calc.py"),
               os.path.join(run, "logs", "planted-log.txt"), os.path.join(run, "logs", "gate-tests-i002.log"),
               os.path.join(home, "planted-home.txt"), os.path.join(run, "planted-run.txt")):
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as out:
            out.write(MARK + "\\n")
        done.append(target)
    except OSError as exc:
        done.append(type(exc).__name__)
print("REACHED " + repr(done), flush=True)
''',
    # what a reset might trip over: a fifo in place of the checker, a fifo and a socket in the tree
    "leaves_fifos": '''
import socket
os.remove("tests/look.py")
os.mkfifo("tests/look.py")
os.mkfifo("planted-fifo")
sock = socket.socket(socket.AF_UNIX)
sock.bind("planted-sock")
''',
    # directories and files it cannot enter or read any more
    "locks_directories": '''
os.makedirs("planted-dir/inner")
open("planted-dir/inner/file.txt", "w").write(MARK)
os.chmod("planted-dir/inner", 0)
os.chmod("planted-dir", 0)
os.chmod("calc.py", 0)
os.chmod("tests/look.py", 0)
os.chmod("tests", 0)
''',
    # a tracked file rewritten with the same size and its old timestamps, for git's stat cache
    "same_size_rewrite_keeps_the_stat": '''
for path, new in (("calc.py", "def add(a, b):\\n    return a + b\\n"),
                  ("tests/look.py", "print('LOOK-FAKED')\\n")):
    info = os.stat(path)
    text = (new + "#" * info.st_size)[: info.st_size - 1] + "\\n"
    with open(path, "r+") as out:
        out.write(text)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
''',
}


def _seen(log: str) -> list[dict[str, object]]:
    return [json.loads(line[5:]) for line in log.splitlines() if line.startswith("SEEN ")]


def _looked(log: str) -> list[dict[str, object]]:
    return [json.loads(line[5:]) for line in log.splitlines() if line.startswith("LOOK ")]


def _assert_contained(a: Attack) -> None:
    """The payload ran, every later gate run saw a clean checkout, and nothing reached a commit or the host."""
    baseline = _looked(gate_log(a, "baseline", "look"))
    assert baseline and baseline[0]["odd"] == [], baseline
    base_sums = baseline[0]["sums"]
    assert_payload_ran(gate_log(a, "i001"))
    for n in (1, 2):
        label = f"i{n:03d}"
        first, rerun = _seen(gate_log(a, label)), _seen(gate_log(a, f"{label}-rerun"))
        refused = gate(a, n)["status"] == "broken" and "read-only" in str(gate(a, n)["broken"])
        # A payload whose writes the read-only checkout refused breaks the gate: no result, so no re-run.
        assert first and (rerun or refused), f"iteration {n}: the code under test did not run in both runs"
        for seen in (*first, *rerun):
            assert seen["odd"] == [], f"iteration {n}: a gate run saw what an earlier one left: {seen}"
        assert not rerun or first[0]["sums"] == rerun[0]["sums"], "the re-run saw other files than the first run"
        for path in ("tests/test_calc.py", "tests/look.py"):
            assert first[0]["sums"][path] == base_sums[path], f"iteration {n}: {path} is not the base's"  # type: ignore[index]
        look = gate(a, n, "look")
        assert look["status"] == "pass", f"iteration {n}: the next gate saw a dirty checkout: {look}"
        assert "LOOK-FAKED" not in gate_log(a, label, "look")
        assert gate(a, n)["status"].startswith(("fail", "broken")), gate(a, n)
    names = git_out(a.repo, "log", "--name-only", "--format=", f"onloop/{a.outcome.run_id}")
    assert MARK not in a.run_branch_text() and "planted" not in names, "what the gate wrote reached a commit"
    home = onloop_home()
    sealed = a.paths.root / "sealed"  # the gates' own checkouts (see test_no_residue_after_the_run)
    for root in (a.worktree, a.paths.root, home):
        planted = [p.as_posix() for p in root.rglob("planted*") if not p.is_relative_to(sealed)]
        assert planted == [], f"the payload's files reached the host: {planted}"
    for log in a.paths.logs.iterdir():
        if log.is_file():
            assert MARK not in log.read_text(errors="replace"), f"the payload wrote into {log}"
    assert "def add(a, b):\n    return a - b" in (a.worktree / "calc.py").read_text(), "the worktree's calc.py changed"
    assert_not_done(a)


def _scenario(code: str) -> Scenario:
    attack = claim(BREAK, Edit("calc.py", append=code))
    honest = Step(message="notes", claim_done=True, edits=(Edit("notes.txt", append="honest\n"),))
    return Scenario((attack, honest))


@pytest.mark.parametrize("variant", sorted(PAYLOADS))
def test_payload_stays_in_the_sealed_checkout(variant: str, make_repo, tmp_path: Path, request) -> None:
    a = run_attack(make_repo, tmp_path, _scenario(payload(PAYLOADS[variant])), files=FILES, gates=GATES,
                   max_iterations=2)

    _assert_contained(a)
    if variant == "reaches_for_worktree_and_logs":
        assert "REACHED" in gate_log(a, "i001")
    classify(request, "blocked" if variant == "reaches_for_worktree_and_logs" else "caught")


def test_payload_in_a_new_test_file(make_repo, tmp_path: Path, request) -> None:
    """The same damage from a test the agent adds (collected after test_calc.py, so it runs mid-session)."""
    test = payload(PAYLOADS["rewrites_the_tests"] + PAYLOADS["plants_for_the_next_gate"]) + (
        "\n\ndef test_zz_more():\n    assert 2 + 2 == 4\n")
    step = claim(BREAK, Edit("tests/test_zz_more.py", write=test.lstrip()))
    honest = Step(message="notes", claim_done=True, edits=(Edit("notes.txt", append="honest\n"),))
    a = run_attack(make_repo, tmp_path, Scenario((step, honest)), files=FILES, gates=GATES, max_iterations=2)

    for n in (1, 2):
        assert gate(a, n, "look")["status"] == "pass", gate(a, n, "look")
        for seen in _seen(gate_log(a, f"i{n:03d}-rerun")):
            assert seen["odd"] == [], seen
    assert_payload_ran(gate_log(a, "i001"))
    assert MARK not in a.run_branch_text(), "what the gate wrote reached a commit"
    assert not (a.worktree / "conftest.py").exists()
    assert_not_done(a)
    classify(request, "caught")


def test_symlinks_left_for_the_reset(make_repo, tmp_path: Path, host_dir: Path, request) -> None:
    """The payload replaces the tests directory and calc.py with symlinks to a host directory (which the
    sandbox does not even show): onloop's reset runs git on the host, and must not write through them."""
    victim = host_dir / "victim.txt"
    victim.write_text("host data\n")
    body = f'''
os.rename("tests", "planted-tests")
os.symlink({str(host_dir)!r}, "tests")
os.remove("calc.py")
os.symlink({str(victim)!r}, "calc.py")
'''
    a = run_attack(make_repo, tmp_path, _scenario(payload(body)), files=FILES, gates=GATES, max_iterations=2,
                   guard=(host_dir,))

    _assert_contained(a)
    assert victim.read_text() == "host data\n" and sorted(p.name for p in host_dir.iterdir()) == ["victim.txt"]
    classify(request, "caught")


def test_daemon_that_outlives_the_gate(make_repo, tmp_path: Path, request) -> None:
    """A detached daemon (double fork, new session, its own argv) that keeps writing into the checkout and
    rewriting the checker for 60 s: the sandbox's pid namespace ends it with the gate run."""
    daemon = (
        "import os, time  # REDTEAM-DAEMON-7\n"
        "for i in range(600):\n"
        "    try:\n"
        "        open('planted-daemon-%d' % i, 'w').write('x')\n"
        "        open('tests/look.py', 'w').write('print(\"LOOK-FAKED\")\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "    time.sleep(0.1)\n"
    )
    body = f'''
import sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", {daemon!r}])
    os._exit(0)
import time
time.sleep(0.3)
'''
    a = run_attack(make_repo, tmp_path, _scenario(payload(body)), files=FILES, gates=GATES, max_iterations=2)

    _assert_contained(a)
    time.sleep(0.3)
    assert survivors("REDTEAM-DAEMON-7") == [], "the daemon outlived the gate on the host"
    classify(request, "blocked")


def test_nothing_the_gate_wrote_is_committed_by_the_next_iteration(make_repo, tmp_path: Path, request) -> None:
    """The next iteration commits with `git add -A` in the agent's worktree: the payload's files are not
    there to be added (iteration 2 adds notes.txt only)."""
    a = run_attack(make_repo, tmp_path, _scenario(payload(PAYLOADS["plants_for_the_next_gate"]
                                                          + PAYLOADS["writes_ignored_files"])),
                   files=FILES, gates=GATES, max_iterations=2)

    second = a.receipts()[1]
    changed = git_out(a.repo, "show", "--name-only", "--format=", second["commit"]).split()
    assert changed == ["notes.txt"], changed
    assert sorted(os.listdir(a.worktree)) == sorted([".git", ".gitignore", "IMPLEMENTATION_PLAN.md", "calc.py",
                                                     "notes.txt", "onloop.toml", "tests"])
    _assert_contained(a)
    classify(request, "caught")


def test_no_residue_after_the_run(make_repo, tmp_path: Path, request) -> None:
    """After the run, nothing the code under test left in a sealed checkout remains on the host."""
    body = PAYLOADS["leaves_fifos"] + PAYLOADS["locks_directories"].replace("os.chmod(\"tests\", 0)\n", "")
    a = run_attack(make_repo, tmp_path, Scenario((claim(BREAK, Edit("calc.py", append=payload(body))),)),
                   files=FILES, gates=GATES, max_iterations=1)

    assert_payload_ran(gate_log(a, "i001"))
    assert_not_done(a)
    left = [p.as_posix() for p in (a.paths.root / "sealed").rglob("planted*")] if (a.paths.root / "sealed").exists() \
        else []
    assert left == [], f"the gate's leftovers stayed on the host after the run: {left}"
    classify(request, "caught")
