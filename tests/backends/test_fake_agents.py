"""The fake agent CLIs themselves: their output shapes match the real transcripts, their argv guards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from backendhelpers import fixture_path

from onloop.testing.fake_agents import split_usage
from onloop.testing.scenario import Edit, Scenario, Step


def run_fake(cli: str, tmp_path: Path, scenario: Scenario, *args: str, env: dict[str, str] | None = None,
             stdin: str = "prompt") -> subprocess.CompletedProcess[str]:
    path = scenario.write(tmp_path / "scenario.json")
    return subprocess.run(
        [sys.executable, "-m", "onloop.testing.fake_agents", cli, "--scenario", str(path), *args],
        cwd=tmp_path, input=stdin, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", **(env or {}), "PYTHONPATH": ":".join(sys.path)},
    )


def keys_by_type(lines: list[str]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for line in lines:
        obj = json.loads(line)
        kind = obj["type"] + ("/" + obj["item"]["type"] if "item" in obj else "")
        seen.setdefault(kind, set()).update(obj.get("item", obj).keys())
    return seen


def test_fake_codex_prints_the_real_shapes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("")
    (tmp_path / "f.txt").write_text("a")
    scenario = Scenario((Step(edits=(Edit("f.txt", replace=("a", "b")),), commands=(("true",),)),))
    done = run_fake("codex", tmp_path, scenario, "exec", "--json", "-", env={"CODEX_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == "Reading additional input from stdin...\n"
    fake = keys_by_type(done.stdout.splitlines())
    real = keys_by_type(fixture_path("codex-success.jsonl").read_text().splitlines())
    for kind in ("thread.started", "turn.started", "turn.completed", "item.completed/agent_message",
                 "item.started/command_execution", "item.completed/command_execution", "item.completed/file_change"):
        assert fake[kind] == real[kind], kind


def test_fake_opencode_prints_the_real_shapes(tmp_path: Path) -> None:
    config = tmp_path / "xdg" / "opencode"
    config.mkdir(parents=True)
    (config / "opencode.json").write_text("{}")
    scenario = Scenario((Step(commands=(("true",),)),))
    done = run_fake("opencode", tmp_path, scenario, "run", "--format", "json",
                    env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert done.returncode == 0, done.stderr
    fake = [json.loads(line) for line in done.stdout.splitlines()]
    real = [json.loads(line) for line in fixture_path("opencode-success.jsonl").read_text().splitlines()]
    real_keys = {o["type"]: set(o) for o in real}
    assert {o["type"]: set(o) for o in fake} == real_keys
    real_finish = next(o for o in real if o["type"] == "step_finish")["part"]
    fake_finish = next(o for o in fake if o["type"] == "step_finish")["part"]
    assert set(fake_finish) == set(real_finish) and set(fake_finish["tokens"]) == set(real_finish["tokens"])
    real_tool = next(o for o in real if o["type"] == "tool_use" and o["part"]["tool"] == "bash")["part"]
    fake_tool = next(o for o in fake if o["type"] == "tool_use")["part"]
    assert set(fake_tool) == set(real_tool) and set(fake_tool["state"]) == set(real_tool["state"])


def test_fake_aider_prints_the_real_lines(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("fix it")
    (tmp_path / "calc.py").write_text("a - b")
    scenario = Scenario((Step(edits=(Edit("calc.py", replace=("a - b", "a + b")),)),))
    flags = ("--message-file", str(tmp_path / "prompt.md"), "--yes-always", "--no-auto-commits",
             "--no-suggest-shell-commands")
    done = run_fake("aider", tmp_path, scenario, *flags, stdin="")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "Applied edit to calc.py" in lines
    assert any(line.startswith("Tokens: 1.0k sent, 200 received. Cost: $0.01 message") for line in lines)
    assert lines[0] == "Aider v0.86.2"


@pytest.mark.parametrize(
    ("cli", "args", "complaint"),
    [
        ("codex", ["exec", "--json", "--trust", "-"], "--trust"),
        ("codex", ["exec", "--json", "do it"], "prompt on stdin"),
        ("aider", ["--message", "x"], "missing --yes-always"),
        ("opencode", ["run"], "--format json"),
    ],
)
def test_fakes_refuse_argv_onloop_must_not_pass(tmp_path: Path, cli: str, args: list[str], complaint: str) -> None:
    done = run_fake(cli, tmp_path, Scenario((Step(),)), *args)
    assert done.returncode == 2
    assert complaint in done.stderr
    assert done.stdout == ""


def test_split_usage_adds_up() -> None:
    parts = split_usage({"input_tokens": 1001, "output_tokens": 7}, 3)
    assert sum(p["input_tokens"] for p in parts) == 1001 and sum(p["output_tokens"] for p in parts) == 7
    assert len(parts) == 3
