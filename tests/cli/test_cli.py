"""The CLI through its real entry point (a subprocess running `python -m onloop.cli`)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from onloop.config import Config, ContextConfig, GateConfig, RunConfig, parse_config
from onloop.init import render_config
from onloop.loop.stop import StopReason
from onloop.policy.model import Policy, ResourceLimits
from onloop.testing import Scenario
from tests.conftest import REPO_ROOT
from tests.loop.helpers import onloop_cli, workspace
from tests.loop.test_run_e2e import feature


@pytest.fixture
def finished_run(make_repo, tmp_path: Path) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    repo = workspace(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second", claim=True))))
    done = onloop_cli("run", "-C", str(repo), "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["kind"] == "run_started" and events[-1]["kind"] == "run_stopped"
    assert events[-1]["reason"] == "done" and events[-1]["exit_code"] == 0
    return repo, events[0]["run_id"]


def test_run_json_show_log_runs_status(finished_run: tuple[Path, str]) -> None:
    _, run_id = finished_run
    show = onloop_cli("show", run_id)
    assert show.returncode == 0 and run_id in show.stdout and "stop: done" in show.stdout
    one = onloop_cli("show", run_id, "--iteration", "1")
    assert one.returncode == 0
    assert "gate tests: pass" in one.stdout and "transcript" in one.stdout and "diff stat" in one.stdout
    as_json = json.loads(onloop_cli("show", run_id, "--json").stdout)
    assert [it["iteration"] for it in as_json["iterations"]] == [1, 2]
    assert as_json["run"]["stop_reason"] == "done"
    log = onloop_cli("log", run_id)
    assert "baseline_gate" in log.stdout and "run_stopped: done" in log.stdout
    assert run_id in onloop_cli("runs").stdout
    assert "no run is going on now" in onloop_cli("status").stdout


def test_quiet_run_prints_the_receipts_table(make_repo, tmp_path: Path) -> None:
    repo = workspace(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second"))))
    done = onloop_cli("run", "-C", str(repo), "--quiet", "--max-iterations", "1")
    assert done.returncode == StopReason.MAX_ITERATIONS.exit_code == 10
    assert "max_iterations (exit 10)" in done.stdout and "first" in done.stdout


def test_unknown_config_key_names_key_line_and_allowed(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"onloop.toml": '[run]\nbackend = "scripted"\nmax_iteration = 3\n'})
    done = onloop_cli("run", "-C", str(repo))
    assert done.returncode == 2
    assert "onloop.toml:3: run.max_iteration: unknown key" in done.stderr
    assert "max_iterations" in done.stderr.split("allowed:")[1]


@pytest.mark.parametrize(("toml", "expected"), [
    ('[run]\nmode = "bild"\n', "run.mode"),
    ('[gates.tests]\ncommand = []\n', "gates.tests.command"),
    ('[gates.tests]\ncommand = ["x"]\ntimeout = "soon"\n', "gates.tests.timeout"),
    ('[run]\nmax_iterations = 5000\n', "run"),
    ('[policy]\nnetwork = "some"\n', "policy.network"),
    ('[run\n', "not valid TOML"),
])
def test_bad_config_values_exit_2_naming_the_key(make_repo, toml: str, expected: str) -> None:
    repo = make_repo({"onloop.toml": toml})
    done = onloop_cli("run", "-C", str(repo))
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr


def test_bad_flag_value_names_the_flag(make_repo, tmp_path: Path) -> None:
    repo = workspace(make_repo, tmp_path, Scenario(()))
    done = onloop_cli("run", "-C", str(repo), "--max-time", "forever")
    assert done.returncode == 2 and "--max-time" in done.stderr


def test_unknown_backend_kind_lists_the_allowed(make_repo, tmp_path: Path) -> None:
    repo = workspace(make_repo, tmp_path, Scenario(()), extra='[backends.mine]\nkind = "gpt-shell"\n')
    done = onloop_cli("run", "-C", str(repo), "--backend", "mine")
    assert done.returncode == 2
    assert "backends.mine.kind" in done.stderr and "claude_code" in done.stderr


def test_steer_and_show_errors(finished_run: tuple[Path, str]) -> None:
    _, run_id = finished_run
    bad = onloop_cli("steer", run_id, "dance")
    assert bad.returncode == 2 and "allowed: pause, resume, stop, say" in bad.stderr
    assert onloop_cli("steer", run_id, "say").returncode == 2
    missing = onloop_cli("show", "no-such-run")
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
    stopped = onloop_cli("steer", run_id, "say", "hello")
    assert stopped.returncode == 2 and f"run {run_id} is stopped (done, exit 0)" in stopped.stderr


def test_resume_of_a_done_run_repeats_its_outcome(finished_run: tuple[Path, str]) -> None:
    _, run_id = finished_run
    again = onloop_cli("run", "--resume", run_id)
    assert again.returncode == 0 and f"run {run_id} stopped: done (exit 0)" in again.stdout


def test_init_scaffolds_and_detects_the_test_command(make_repo) -> None:
    repo = make_repo({"pyproject.toml": "[project]\nname = 'x'\n"})
    done = onloop_cli("init", str(repo))
    assert done.returncode == 0, done.stderr
    for name in ("onloop.toml", "PROMPT.md", "PROMPT_plan.md", "specs/README.md", "IMPLEMENTATION_PLAN.md",
                 "AGENTS.md"):
        assert (repo / name).exists(), name
    config = parse_config((repo / "onloop.toml").read_text())
    assert config.gates["tests"].command[:3] == ["python", "-m", "pytest"]
    again = onloop_cli("init", str(repo))
    assert "nothing to do" in again.stdout


@pytest.mark.parametrize(("files", "expected"), [
    ({"package.json": '{"scripts": {"test": "jest"}}'}, ["npm", "test", "--silent"]),
    ({"Cargo.toml": "[package]\nname='x'\n"}, ["cargo", "test"]),
    ({"go.mod": "module x\n"}, ["go", "test", "-json", "./..."]),
    ({"Makefile": "test:\n\techo ok\n"}, ["make", "test"]),
])
def test_init_detects_other_ecosystems(make_repo, files: dict[str, str], expected: list[str]) -> None:
    repo = make_repo(files)
    assert onloop_cli("init", str(repo)).returncode == 0
    assert tomllib.loads((repo / "onloop.toml").read_text())["gates"]["tests"]["command"] == expected


def test_every_config_key_is_documented_in_the_template() -> None:
    text = render_config()
    for model in (RunConfig, ContextConfig, GateConfig, Policy, ResourceLimits):
        for key, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{key} has no description"
            if key not in ("actions", "limits"):
                assert f"# {field.description}" in text, f"{model.__name__}.{key} missing from the template"
    assert parse_config(text) == parse_config(render_config(parse_config(text)))
    assert isinstance(parse_config(text), Config)


def test_readme_exit_codes_match_the_stop_reasons() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for reason in StopReason:
        assert f"| `{reason.value}` | {reason.exit_code} |" in readme, reason


def test_help_lists_every_command() -> None:
    onloop = Path(sys.executable).parent / "onloop"  # the console script installed beside this Python
    done = subprocess.run([str(onloop), "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0
    for command in ("init", "run", "demo", "status", "runs", "show", "log", "steer", "policy", "memory", "note",
                    "condense", "quarantine", "registry"):
        assert command in done.stdout


def test_policy_file_overrides_the_workspace_policy_for_one_run(make_repo, tmp_path: Path) -> None:
    from onloop.store import runs as store
    from onloop.store.db import Database

    repo = workspace(make_repo, tmp_path, Scenario((feature("one", "first"), feature("two", "second"))))
    override = tmp_path / "run-policy.toml"
    override.write_text('[policy]\nsandbox = "none"\nlimits = { cpu = "10m" }\n')

    done = onloop_cli("run", "-C", str(repo), "--quiet", "--policy", str(override))

    assert done.returncode == 0, done.stderr
    run = store.list_runs(Database.open_default())[0]
    frozen = json.loads(run.config_json)["policy"]
    assert frozen["sandbox"] == "none" and frozen["limits"]["cpu"] == 600.0
    assert frozen["limits"]["memory"] == 8 * 1024**3, "keys the file does not name keep the workspace's values"
    assert "onloop.toml" in frozen["protected"]
    bad = tmp_path / "bad-policy.toml"
    bad.write_text('[policy]\nnetwork = "everything"\n')
    refused = onloop_cli("run", "-C", str(repo), "--policy", str(bad))
    assert refused.returncode == 2 and "policy.network" in refused.stderr and "bad-policy.toml:2" in refused.stderr
    assert onloop_cli("run", "--resume", run.id, "--policy", str(override)).returncode == 2
