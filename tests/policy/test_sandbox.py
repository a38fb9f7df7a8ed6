"""The bubblewrap sandbox, exercised with real bwrap and real processes."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from policy_helpers import Checkout, needs_bwrap

from onloop.errors import SandboxUnavailable
from onloop.policy.model import Policy
from onloop.policy.sandbox import BwrapSandbox, sandbox_for
from onloop.process import Limits, NoSandbox, ProcessResult, ProcessSpec, run_process

pytestmark = needs_bwrap
PY = sys.executable


def run(box: BwrapSandbox, script: str, cwd: Path, **kw: object) -> tuple[ProcessResult, str]:
    lines: list[str] = []
    spec = ProcessSpec(argv=("/bin/sh", "-c", script), cwd=cwd, timeout=kw.pop("timeout", 30), **kw)  # type: ignore[arg-type]
    result = run_process(spec, box, on_line=lines.append)
    return result, "\n".join(lines)


def run_py(box: BwrapSandbox, code: str, cwd: Path, **kw: object) -> tuple[ProcessResult, str]:
    lines: list[str] = []
    spec = ProcessSpec(argv=(PY, "-c", code), cwd=cwd, timeout=kw.pop("timeout", 30), **kw)  # type: ignore[arg-type]
    result = run_process(spec, box, on_line=lines.append)
    return result, "\n".join(lines)


# -- file system ------------------------------------------------------------------------------------


def test_worktree_writable_and_git_read_only(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    head_before = (checkout.git_dir / "refs" / "heads" / "run").read_text()
    _result, out = run(
        sandbox,
        "echo new > b.txt && git status --porcelain && git diff --stat HEAD; "
        "git add b.txt; echo add=$?; git commit -qm x; echo commit=$?; "
        "git update-ref refs/heads/main HEAD; echo ref=$?; git branch -f main HEAD; echo branch=$?",
        checkout.worktree,
    )
    assert "?? b.txt" in out
    assert "add=128" in out and "commit=128" in out and "ref=128" in out and "branch=128" in out
    assert "Read-only file system" in out
    assert (checkout.worktree / "b.txt").read_text() == "new\n"
    assert (checkout.git_dir / "refs" / "heads" / "run").read_text() == head_before


@pytest.mark.parametrize(
    "target",
    ["abs_etc", "dotdot", "repo_git", "home", "sibling_repo", "git_pointer"],
)
def test_writes_outside_worktree_never_reach_the_host(
    sandbox: BwrapSandbox, checkout: Checkout, target: str
) -> None:
    marker = f"escape-{uuid.uuid4().hex[:8]}"
    paths = {
        "abs_etc": Path("/etc") / marker,
        "dotdot": checkout.worktree.parent / marker,  # written as ../marker below
        "repo_git": checkout.git_dir / marker,
        "home": Path.home() / marker,
        "sibling_repo": checkout.repo / marker,
        "git_pointer": checkout.worktree / ".git",
    }
    host_path = paths[target]
    before = host_path.read_text() if host_path.is_file() else None
    inside = f"../{marker}" if target == "dotdot" else str(host_path)
    if target == "home":
        inside = f"$HOME/{marker}"
        host_path = Path.home() / marker
    _result, out = run(sandbox, f'echo pwned > "{inside}"; echo rc=$?', checkout.worktree)
    if before is None:
        assert not host_path.exists(), out
    else:
        assert host_path.read_text() == before
    if target in ("abs_etc", "repo_git", "git_pointer"):
        assert "rc=0" not in out and "Read-only file system" in out


def test_worktree_and_onloop_home_under_tmp_are_bound_after_the_tmpfs(
    tmp_path: Path, make_repo, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    home = tmp_path / "onloop-home"
    (home / "worktrees").mkdir(parents=True)
    (home / "state.db").write_text("onloop's database")
    monkeypatch.setenv("ONLOOP_HOME", str(home))
    repo = make_repo({"x.txt": "x\n"}, name="r2")
    worktree = home / "worktrees" / "run1"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "-b", "r", str(worktree)], check=True)
    assert str(worktree).startswith("/tmp/")
    box = BwrapSandbox(Policy(), worktree, repo / ".git")
    result, out = run(
        box, f"cat x.txt; echo made > y.txt; git status --porcelain; cat {home}/state.db; echo db=$?", worktree
    )
    assert result.exit_code == 0
    assert "x" in out and "?? y.txt" in out
    assert "onloop's database" not in out and "db=1" in out
    assert (worktree / "y.txt").read_text() == "made\n"


def test_extra_writable_and_scratch_dirs(checkout: Checkout, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    extra = tmp_path / "extra"
    extra.mkdir()
    box = BwrapSandbox(Policy(), checkout.worktree, checkout.git_dir, [scratch])
    spec = ProcessSpec(
        argv=("/bin/sh", "-c", f"echo s > {scratch}/f && echo e > {extra}/f"),
        cwd=checkout.worktree, writable=(extra,), timeout=30,
    )
    assert run_process(spec, box).exit_code == 0
    assert (scratch / "f").read_text() == "s\n" and (extra / "f").read_text() == "e\n"


def test_capabilities_dropped_so_mounts_cannot_be_undone(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    _result, out = run(
        sandbox, "grep CapEff /proc/self/status; mount -o remount,rw /; echo rc=$?", checkout.worktree
    )
    assert "CapEff:\t0000000000000000" in out
    assert "rc=0" not in out


# -- secrets ----------------------------------------------------------------------------------------


def test_host_secrets_are_hidden(checkout: Checkout, tmp_path: Path) -> None:
    # Another repository in the tmp area (tests' stand-in for a scratch dir of the host).
    other = tmp_path / "other-repo"
    other.mkdir()
    (other / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    # Another repository elsewhere on the host: outside the system dirs, so absent.
    host_dir = Path(tempfile.mkdtemp(prefix="onloop-test-", dir="/var/tmp"))
    try:
        (host_dir / "token").write_text("s3cret-token")
        (host_dir / "shared").mkdir()
        (host_dir / "shared" / "tool.txt").write_text("toolchain file")
        (host_dir / "shared" / "private").mkdir()
        (host_dir / "shared" / "private" / "key").write_text("nested-secret")
        box = BwrapSandbox(
            Policy(readable=[str(host_dir / "shared")], hidden=[str(host_dir / "shared" / "private")]),
            checkout.worktree, checkout.git_dir,
        )
        _, out = run(box, f"cat {host_dir}/token {other}/id_rsa {host_dir}/shared/tool.txt "
                          f"{host_dir}/shared/private/key; ls -A /root /home /run", checkout.worktree)
        assert "s3cret-token" not in out and "PRIVATE KEY" not in out and "nested-secret" not in out
        assert "toolchain file" in out  # policy.readable shows it
    finally:
        shutil.rmtree(host_dir)


def test_root_only_files_in_etc_are_masked(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    if not Path("/etc/shadow").exists():
        pytest.skip("no /etc/shadow here")
    _, out = run(sandbox, "cat /etc/shadow 2>/dev/null | wc -c; ls -A /etc/ssh | wc -l; "
                          "cat /etc/passwd >/dev/null && echo etc-ok", checkout.worktree)
    # /dev/null is bound in its place (on a nodev mount: opening it fails, which is just as good).
    assert out.split()[:2] == ["0", "0"]
    assert "etc-ok" in out


def test_the_operators_checkout_is_not_visible(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    (checkout.repo / ".env").write_text("DB_PASSWORD=operator-secret\n")
    _, out = run(sandbox, f"cat {checkout.repo}/.env; git log --oneline | wc -l", checkout.worktree)
    assert "operator-secret" not in out
    assert out.split()[-1] == "1"  # history is still readable through the read-only git dir


def test_hidden_path_inside_the_worktree(checkout: Checkout) -> None:
    secrets = checkout.worktree / "private"
    secrets.mkdir()
    (secrets / "key").write_text("inner-secret")
    box = BwrapSandbox(Policy(hidden=[str(secrets)]), checkout.worktree, checkout.git_dir)
    _, out = run(box, "cat private/key; cat a.txt", checkout.worktree)
    assert "inner-secret" not in out and "hello" in out


def test_real_home_contents_invisible(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    entries = [p for p in Path.home().iterdir() if not any(
        str(r).startswith(str(p)) for r in sandbox.readable_paths())]
    if not entries:
        pytest.skip("home directory has nothing but readable toolchains")
    probe = entries[0]
    _, out = run(sandbox, f"test -e '{probe}' && echo VISIBLE || echo hidden", checkout.worktree)
    assert out.strip() == "hidden"


def test_environment_secrets_not_passed(
    sandbox: BwrapSandbox, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "sk-fake-parent-secret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    spec = ProcessSpec(
        argv=("/bin/sh", "-c", "env"), cwd=checkout.worktree, env={"ONLOOP_EXPLICIT": "given"}, timeout=30
    )
    lines: list[str] = []
    run_process(spec, sandbox, on_line=lines.append)
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert "FAKE_API_KEY" not in env
    assert env["ONLOOP_EXPLICIT"] == "given"
    assert env["LANG"] == "C.UTF-8"  # on the allowlist
    assert env["HOME"] == "/tmp/home"
    assert "given" not in " ".join(sandbox.wrap(spec))  # values never ride in argv (ps shows argv)


# -- network ----------------------------------------------------------------------------------------


@pytest.fixture
def local_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close(); print("CONNECTED")
except OSError as e:
    print("refused", e)
try:
    print("RESOLVED", socket.getaddrinfo("example.com", 80))
except OSError as e:
    print("no dns", e)
"""


def test_network_none_blocks_loopback_and_dns(
    sandbox: BwrapSandbox, checkout: Checkout, local_server: int
) -> None:
    with socket.create_connection(("127.0.0.1", local_server), timeout=3):
        pass  # reachable from the host
    spec_network = {"network": True}  # asking for network does not help when the policy says none
    _, out = run_py(sandbox, CONNECT.format(port=local_server), checkout.worktree, **spec_network)
    assert "CONNECTED" not in out and "refused" in out
    assert "RESOLVED" not in out and "no dns" in out


def test_network_full_when_policy_and_spec_agree(checkout: Checkout, local_server: int) -> None:
    box = BwrapSandbox(Policy(network="full"), checkout.worktree, checkout.git_dir)
    _, out = run_py(box, CONNECT.format(port=local_server), checkout.worktree, network=True)
    assert "CONNECTED" in out
    _, out = run_py(box, CONNECT.format(port=local_server), checkout.worktree, network=False)
    assert "CONNECTED" not in out


# -- limits -----------------------------------------------------------------------------------------


def _alive(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, timeout=10).returncode == 0


def test_timeout_kills_the_whole_sandboxed_group(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    marker = f"onloop{uuid.uuid4().hex[:6]}"
    start = time.monotonic()
    result, _ = run(
        sandbox, f"(sleep 1000 & sleep 1000; echo {marker}) & exec sleep 1000 # {marker}",
        checkout.worktree, timeout=1,
    )
    elapsed = time.monotonic() - start
    assert result.timed_out
    assert elapsed < 4, elapsed
    deadline = time.monotonic() + 3
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(marker)
    assert not _alive("sleep 1000")


FORK_BOMB = """
import os, time
made = 0
for _ in range(400):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    made += 1
print("forked", made, flush=True)
"""


def test_fork_bomb_is_bounded(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    result, out = run_py(sandbox, FORK_BOMB, checkout.worktree, limits=Limits(processes=40), timeout=20)
    made = int(out.split("forked", 1)[1].split()[0])
    assert made < 40, out
    assert not result.timed_out


def test_file_size_limit(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    code = "open('big.bin','wb').write(b'x' * 3_000_000); print('WROTE')"
    result, out = run_py(sandbox, code, checkout.worktree, limits=Limits(file_size_bytes=1_000_000))
    assert "WROTE" not in out
    assert result.exit_code != 0
    assert (checkout.worktree / "big.bin").stat().st_size <= 1_000_000


def test_output_flood_is_capped(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    spec = ProcessSpec(argv=("yes", "flood"), cwd=checkout.worktree, timeout=20, limits=Limits(output_bytes=100_000))
    start = time.monotonic()
    result = run_process(spec, sandbox)
    assert result.output_truncated and result.output_bytes == 100_000
    assert time.monotonic() - start < 10
    assert not _alive("yes flood")


def test_memory_limit(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    code = "x = bytearray(600 * 1024 * 1024); print('ALLOCATED')"
    _result, out = run_py(sandbox, code, checkout.worktree, limits=Limits(memory_bytes=200 * 1024 * 1024))
    assert "ALLOCATED" not in out and "MemoryError" in out
    _, out = run_py(sandbox, "x = bytearray(50 * 1024 * 1024); print('ALLOCATED')", checkout.worktree,
                    limits=Limits(memory_bytes=200 * 1024 * 1024))
    assert "ALLOCATED" in out


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_node_webassembly_works_under_default_limits(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    # Agent CLIs run on node or bun, which reserve huge address ranges for WebAssembly.
    spec = ProcessSpec(argv=("node", "-e", "new WebAssembly.Memory({initial: 1}); console.log('wasm ok')"),
                       cwd=checkout.worktree, timeout=30)
    lines: list[str] = []
    run_process(spec, sandbox, on_line=lines.append)
    assert "wasm ok" in lines


def test_cpu_limit(sandbox: BwrapSandbox, checkout: Checkout) -> None:
    result, _ = run_py(sandbox, "while True: pass", checkout.worktree, limits=Limits(cpu_seconds=1), timeout=20)
    assert not result.timed_out and result.exit_code != 0


def test_limits_fall_back_to_python_without_prlimit(checkout: Checkout) -> None:
    box = BwrapSandbox(Policy(), checkout.worktree, checkout.git_dir)
    box.prlimit = None
    _, out = run(box, "grep 'Max file size' /proc/self/limits", checkout.worktree,
                 limits=Limits(file_size_bytes=123456))
    assert "123456" in out


# -- availability -----------------------------------------------------------------------------------


def test_missing_bwrap_is_refused_with_install_hint(checkout: Checkout) -> None:
    box = BwrapSandbox(Policy(), checkout.worktree, checkout.git_dir, bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        box.check()


def test_broken_bwrap_reports_its_error(checkout: Checkout, tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    box = BwrapSandbox(Policy(), checkout.worktree, checkout.git_dir, bwrap=str(fake))
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace"):
        box.check()


def test_sandbox_for_never_falls_back(checkout: Checkout, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(sandbox_for(Policy(sandbox="none"), checkout.worktree), NoSandbox)
    assert isinstance(sandbox_for(Policy(), checkout.worktree, checkout.git_dir), BwrapSandbox)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable):
        sandbox_for(Policy(), checkout.worktree, checkout.git_dir)


def test_unprivileged_user_can_use_the_sandbox() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    # pytest's tmp dirs are private to root, so the nobody user works in /var/tmp.
    work = Path(tempfile.mkdtemp(prefix="onloop-nobody-", dir="/var/tmp"))
    try:
        work.chmod(0o777)
        _run_as_nobody(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_as_nobody(work: Path) -> None:
    code = (
        "from pathlib import Path; from onloop.policy.model import Policy;"
        "from onloop.policy.sandbox import BwrapSandbox; from onloop.process import ProcessSpec, run_process;"
        f"b=BwrapSandbox(Policy(), Path('{work}'), None); b.check();"
        f"r=run_process(ProcessSpec(argv=('/bin/sh','-c','id -u; touch ok'), cwd=Path('{work}'), timeout=20), b);"
        "print('rc', r.exit_code)"
    )
    purelib = sysconfig.get_paths()["purelib"]
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", code],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{Path(__file__).resolve().parents[2] / 'src'}:{purelib}"},
    )
    if "No module named" in done.stderr:
        pytest.skip(f"system python cannot import onloop's dependencies: {done.stderr[-200:]}")
    assert "rc 0" in done.stdout, done.stderr
    assert (work / "ok").exists()
