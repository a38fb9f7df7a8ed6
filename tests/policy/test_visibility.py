"""What a sandboxed process can see: programs resolved in the sandbox's view, with real files and links.

Tests run from /tmp, which the sandbox hides: a tool made in `tmp_path` outside the workspace is a
hidden one, as the operator's script under /tmp was. The workspace's files are shown in the run's
checkout (`CHECKOUT`); the real-sandbox tests root a real sandbox at the workspace and build the view
with `at=` the workspace, so both see the same tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from policy_helpers import needs_bwrap

from onloop.config import Config, parse_config
from onloop.errors import ConfigError
from onloop.policy.model import Policy
from onloop.policy.sandbox import DEFAULT_PATH, BwrapSandbox
from onloop.policy.visibility import (
    CHECKOUT,
    Blocked,
    Found,
    Problem,
    Program,
    Resolution,
    VisibilityError,
    check_config,
    check_program,
    configured_programs,
    require_visible,
    sandbox_view,
)
from onloop.process import ProcessSpec, run_process

TMPFS = "which the sandbox replaces with an empty tmpfs"


def script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def link(path: Path, target: Path | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def program(name: str, path: str = DEFAULT_PATH) -> Program:
    return Program("gate 'tests'", "gates.tests.command", name, path)


def problem(policy: Policy, workspace: Path, name: str, path: str = DEFAULT_PATH) -> Problem:
    result = check_program(policy, workspace, program(name, path))
    assert isinstance(result, Problem), result
    return result


def resolved(policy: Policy, workspace: Path, name: str, path: str = DEFAULT_PATH) -> Resolution:
    result = check_program(policy, workspace, program(name, path))
    assert isinstance(result, Resolution), result.message()
    return result


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


@pytest.fixture
def toolchain(tmp_path: Path) -> Path:
    """A python "installed" under /tmp (as pyenv installs under /root): a real link to the system's."""
    prefix = tmp_path / "pyenv" / "versions" / "3.12"
    link(prefix / "bin" / "python3", Path("/usr/bin/python3").resolve())
    return prefix


# -- the view is the sandbox's --------------------------------------------------------------------


def _layers_of(argv: list[str]) -> list[tuple[str, bool]]:
    """(mount point, shows the host) for every mount option of a bwrap argv, in order."""
    layers, index = [], 0
    while index < len(argv):
        option = argv[index]
        if option in ("--ro-bind", "--bind", "--symlink"):
            layers.append((argv[index + 2], argv[index + 1] != "/dev/null"))
            index += 3
        elif option in ("--tmpfs", "--dev", "--proc"):
            layers.append((argv[index + 1], option != "--tmpfs"))
            index += 2
        else:
            index += 2  # --dir
    return layers


def test_mounts_are_the_argv_layer_for_layer(tmp_path: Path, ws: Path, toolchain: Path) -> None:
    (ws / "secrets").mkdir()
    (tmp_path / "masked").mkdir()
    (ws / "build").mkdir()
    policy = Policy(readable=[str(toolchain)], hidden=[str(ws / "secrets")])
    spec = ProcessSpec(argv=("true",), cwd=ws, writable=(tmp_path / "scratch",), masked=(tmp_path / "masked",),
                       readable=(tmp_path / "pyenv",), tmpfs=(ws / "build",))
    (tmp_path / "scratch").mkdir()
    for read_only_root in (False, True):
        box = BwrapSandbox(policy, ws, None, read_only_root=read_only_root)
        mounts = [(str(m.path), m.visible) for m in box.mounts(spec)]
        assert mounts == _layers_of(box.mount_args(spec))
    whys = {m.path: m.why for m in BwrapSandbox(policy, ws, None).mounts(spec)}
    assert whys[Path("/tmp")] == "tmpfs" and whys[ws.resolve()] == "worktree"
    assert whys[toolchain.resolve()] == "policy.readable" and whys[(ws / "secrets").resolve()] == "policy.hidden"


def test_the_checkout_is_shown_at_its_stand_in_path(ws: Path) -> None:
    view = sandbox_view(Policy(), ws)
    script(ws / "run.sh", "#!/bin/sh\n")
    assert view.locate(Path("run.sh")) == Found(CHECKOUT / "run.sh", ws.resolve() / "run.sh")
    hidden = view.locate(ws / "run.sh")  # the workspace itself is under /tmp, and the run's checkout elsewhere
    assert isinstance(hidden, Blocked) and hidden.kind == "hidden" and hidden.mount is not None


# -- programs that resolve -------------------------------------------------------------------------


def test_system_programs_on_the_path_resolve(ws: Path) -> None:
    python = resolved(Policy(), ws, "python3")
    assert python.files[-1].is_relative_to("/usr") and os.access(python.files[-1], os.X_OK)
    assert resolved(Policy(), ws, "sh").files


def test_a_relative_script_in_the_repository_resolves_with_its_interpreter(ws: Path) -> None:
    script(ws / "run-tests.sh", "#!/bin/sh\nexit 0\n")
    script(ws / "check.py", "#!/usr/bin/env python3\nprint(1)\n")
    assert resolved(Policy(), ws, "./run-tests.sh").files[0] == CHECKOUT / "run-tests.sh"
    env_files = resolved(Policy(), ws, "./check.py").files
    assert env_files[1] == Path("/usr/bin/env") and env_files[2].name.startswith("python3")


def test_a_venv_in_the_worktree_made_from_a_system_python_resolves(ws: Path) -> None:
    link(ws / ".venv" / "bin" / "python3", "/usr/bin/python3")
    link(ws / ".venv" / "bin" / "python", "python3")
    assert resolved(Policy(), ws, ".venv/bin/python").files[0].is_relative_to("/usr/bin")


def test_policy_readable_shows_a_toolchain(ws: Path, toolchain: Path) -> None:
    resolved(Policy(readable=[str(toolchain)]), ws, str(toolchain / "bin" / "python3"))


def test_with_the_sandbox_off_nothing_is_hidden(tmp_path: Path, ws: Path) -> None:
    tool = script(tmp_path / "tools" / "lint", "#!/bin/sh\n")
    resolved(Policy(sandbox="none"), ws, str(tool))


# -- programs the sandbox hides ----------------------------------------------------------------------


def test_a_script_under_tmp_is_hidden_with_the_fix_line(tmp_path: Path, ws: Path) -> None:
    tool = script(tmp_path / "agent" / "run-agent", "#!/bin/sh\n")
    found = problem(Policy(readable=["/opt"]), ws, str(tool))
    message = found.message(["/opt"])
    assert f"{tool} is under /tmp, {TMPFS}" in message
    assert "gates.tests.command: gate 'tests' cannot start" in message
    assert f'Fix: readable = ["/opt", "{tmp_path / "agent"}"] under [policy] in onloop.toml' in message
    assert "or install it under /usr/local or /opt" in message


def test_a_venv_whose_interpreter_links_to_a_hidden_python_is_caught(ws: Path, toolchain: Path) -> None:
    # A venv made from a python under /root/.pyenv, here one under /tmp: the venv is in the worktree
    # (visible), its interpreter is not.
    link(ws / ".venv" / "bin" / "python3", toolchain / "bin" / "python3")
    link(ws / ".venv" / "bin" / "python", "python3")
    found = problem(Policy(), ws, ".venv/bin/python")
    assert f"./.venv/bin/python resolves to {toolchain / 'bin' / 'python3'}, and that is under /tmp, {TMPFS}" \
        in found.reason
    assert found.readable == (toolchain,), "the prefix above bin/, where the stdlib lives too"


def test_a_script_whose_interpreter_is_hidden(ws: Path, toolchain: Path) -> None:
    script(ws / "check.py", f"#!{toolchain}/bin/python3 -u\nprint(1)\n")
    found = problem(Policy(), ws, "./check.py")
    assert f"./check.py needs its interpreter (#!{toolchain}/bin/python3 -u)" in found.reason
    assert f"is under /tmp, {TMPFS}" in found.reason and found.readable == (toolchain,)


def test_an_env_shebang_looks_its_program_up_on_the_path_inside(tmp_path: Path, ws: Path) -> None:
    script(tmp_path / "venv" / "bin" / "vis-tool", "#!/bin/sh\n")
    script(ws / "lint.sh", "#!/usr/bin/env -S vis-tool --strict\n")
    found = problem(Policy(), ws, "./lint.sh", f"{tmp_path / 'venv' / 'bin'}:{DEFAULT_PATH}")
    assert "./lint.sh runs `vis-tool` through #!/usr/bin/env -S vis-tool --strict" in found.reason
    assert found.readable == (tmp_path / "venv",)


def test_a_name_found_only_in_a_hidden_path_entry(tmp_path: Path, ws: Path) -> None:
    # The user's case: the venv's bin dir under their home heads the PATH; inside, it is empty.
    bin_dir = tmp_path / "project" / ".venv" / "bin"
    script(bin_dir / "vis-python", "#!/bin/sh\n")
    found = problem(Policy(), ws, "vis-python", f"{bin_dir}:{DEFAULT_PATH}")
    assert "`vis-python` is not on the PATH inside the sandbox" in found.reason
    assert f"the host's {bin_dir / 'vis-python'} is under /tmp, {TMPFS}" in found.reason
    assert found.readable == (bin_dir.parent,)


def test_a_version_manager_shim_is_not_opened_path_by_path(tmp_path: Path, ws: Path) -> None:
    shims = tmp_path / "pyenv" / "shims"
    script(shims / "vis-python", "#!/usr/bin/env bash\nexec pyenv exec vis-python\n")
    found = problem(Policy(), ws, "vis-python", f"{shims}:{DEFAULT_PATH}")
    assert not found.readable and "`pyenv which python`" in found.fix


def test_a_chain_of_hidden_steps_gets_one_readable_line(tmp_path: Path, ws: Path, toolchain: Path) -> None:
    bin_dir = tmp_path / "project" / ".venv" / "bin"
    link(bin_dir / "python3", toolchain / "bin" / "python3")
    found = problem(Policy(), ws, str(bin_dir / "python3"))
    assert found.readable == (bin_dir.parent, toolchain)
    resolved(Policy(readable=[str(p) for p in found.readable]), ws, str(bin_dir / "python3"))


def test_a_program_that_exists_nowhere(ws: Path) -> None:
    found = problem(Policy(), ws, "calc-lint-not-installed")
    assert "there is no `calc-lint-not-installed` on the PATH, inside the sandbox or on this host" in found.reason
    assert not found.readable and "install it" in found.fix
    missing = problem(Policy(), ws, "./scripts/nothing.sh")
    assert "./scripts/nothing.sh does not exist" in missing.reason


def test_a_path_policy_hidden_hides_is_not_opened_again(tmp_path: Path, ws: Path) -> None:
    tools = tmp_path / "tools"
    tool = script(tools / "secret" / "tool", "#!/bin/sh\n")
    found = problem(Policy(readable=[str(tools)], hidden=[str(tools / "secret")]), ws, str(tool))
    assert "which policy.hidden hides" in found.reason and not found.readable
    assert "out of policy.hidden" in found.fix


def test_an_absolute_path_into_the_workspace_is_named_relative(ws: Path) -> None:
    script(ws / "scripts" / "t.sh", "#!/bin/sh\n")
    found = problem(Policy(), ws, str(ws / "scripts" / "t.sh"))
    assert "a run works in a checkout of its own" in found.reason and "./scripts/t.sh" in found.fix


def test_a_program_that_is_not_executable(ws: Path) -> None:
    (ws / "run.sh").write_text("#!/bin/sh\n")
    assert "not an executable file" in problem(Policy(), ws, "./run.sh").reason


# -- the configuration ---------------------------------------------------------------------------------


def _config(text: str) -> Config:
    return parse_config(text)


def test_configured_programs_are_gates_and_cli_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(
        '[run]\nbackend = "agent"\nfallback_backend = "local"\n'
        '[backends.agent]\nkind = "command"\ncommand = ["/srv/agent", "--x"]\nenv = { PATH = "/opt/bin" }\n'
        '[backends.local]\nkind = "builtin"\n'
        '[gates.tests]\ncommand = ["python3", "-m", "pytest"]\n'
        '[gates.port]\nkind = "differential"\nreference = ["ref"]\ncandidate = ["./cand"]\ninputs = ["*.txt"]\n'
    )
    programs = {p.key: p for p in configured_programs(config)}
    assert set(programs) == {"gates.tests.command", "gates.port.reference", "gates.port.candidate",
                             "backends.agent.command"}
    assert programs["backends.agent.command"].name == "/srv/agent"
    assert programs["backends.agent.command"].path == "/opt/bin", "the backend's own env sets its PATH"
    scripted = configured_programs(_config('[run]\nbackend = "s"\n[backends.s]\nkind = "scripted"\nscenario = "x"\n'))
    assert [p.name for p in scripted] == [sys.executable]
    monkeypatch.setenv("PATH", str(tmp_path))  # no `claude` installed: the backend says so when it starts
    assert configured_programs(_config('[run]\nbackend = "claude_code"\n')) == []
    script(tmp_path / "claude", "#!/bin/sh\n")
    assert [p.name for p in configured_programs(_config('[run]\nbackend = "claude_code"\n'))] == [
        str(tmp_path / "claude")], "found on onloop's PATH, as the backend finds it"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_a_relative_program_must_be_committed(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"run-tests.sh": "#!/bin/sh\nexit 0\n", ".gitignore": ".venv/\n"})
    (repo / "run-tests.sh").chmod(0o755)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "mode")
    link(repo / ".venv" / "bin" / "python", "/usr/bin/python3")
    config = _config('[run]\nbackend = "builtin"\n[gates.a]\ncommand = ["./run-tests.sh"]\n'
                     '[gates.b]\ncommand = [".venv/bin/python", "-m", "unittest"]\n')
    results = check_config(config, repo)
    assert [type(r).__name__ for r in results] == ["Resolution", "Resolution", "Problem"]
    assert isinstance(results[2], Problem) and "is not committed" in results[2].reason


def test_require_visible_raises_an_operator_error_naming_every_program(tmp_path: Path, ws: Path) -> None:
    tool = script(tmp_path / "tools" / "lint", "#!/bin/sh\n")
    agent = script(tmp_path / "agent" / "agent.sh", "#!/bin/sh\n")
    config = _config(f'[run]\nbackend = "agent"\n[backends.agent]\nkind = "command"\ncommand = ["{agent}"]\n'
                     f'[gates.lint]\ncommand = ["{tool}"]\n[policy]\nreadable = ["/opt"]\n')
    with pytest.raises(VisibilityError) as caught:
        require_visible(config, ws)
    error = caught.value
    assert isinstance(error, ConfigError) and error.exit_code == 2
    text = str(error)
    assert "gates.lint.command: gate 'lint'" in text and "backends.agent.command: backend 'agent'" in text
    assert f'All at once: readable = ["/opt", "{tmp_path / "tools"}", "{tmp_path / "agent"}"]' in text
    require_visible(config.model_copy(update={"policy": Policy(sandbox="none")}), ws)


# -- what the check says is what the real sandbox does -------------------------------------------------


def _cases(tmp_path: Path, ws: Path, toolchain: Path) -> tuple[str, list[str]]:
    tools = tmp_path / "tools" / "bin"
    link(tools / "sh", "/bin/sh")
    script(tools / "vis-tool", "#!/bin/sh\nexit 0\n")
    script(ws / "ok.sh", "#!/bin/sh\nexit 0\n")
    script(ws / "env-ok.sh", "#!/usr/bin/env sh\nexit 0\n")
    script(ws / "hidden-interpreter.sh", f"#!{tools}/sh\nexit 0\n")
    script(ws / "env-hidden.sh", "#!/usr/bin/env vis-tool\n")
    link(ws / ".venv" / "bin" / "python3", toolchain / "bin" / "python3")
    link(ws / "sys-venv" / "bin" / "python3", "/usr/bin/python3")
    path = f"{tools}:{DEFAULT_PATH}"
    names = ["./ok.sh", "./env-ok.sh", "true", "./sys-venv/bin/python3", "./hidden-interpreter.sh",
             "./env-hidden.sh", ".venv/bin/python3", str(tools / "sh"), "vis-tool"]
    return path, names


@needs_bwrap
@pytest.mark.parametrize("opened", [False, True], ids=["default", "with-the-fix"])
def test_the_check_agrees_with_the_real_sandbox(tmp_path: Path, ws: Path, toolchain: Path, opened: bool) -> None:
    path, names = _cases(tmp_path, ws, toolchain)
    policy = Policy(readable=[str(tmp_path / "tools"), str(toolchain)] if opened else [])
    with BwrapSandbox(policy, ws, None) as box:
        box.check()
        verdicts = {}
        for name in names:
            said = check_program(policy, ws, program(name, path), at=ws)
            spec = ProcessSpec(argv=(name,), cwd=ws, env={"PATH": path}, timeout=30)
            ran = run_process(spec, box, log_path=tmp_path / "out.log")
            verdicts[name] = (isinstance(said, Resolution), ran.exit_code == 0)
    assert all(said == ran for said, ran in verdicts.values()), verdicts
    visible = {name for name, (said, _) in verdicts.items() if said}
    expected = set(names) if opened else {"./ok.sh", "./env-ok.sh", "true", "./sys-venv/bin/python3"}
    assert visible == expected
