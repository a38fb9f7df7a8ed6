"""`onloop policy show` and `onloop policy check`, through typer's runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from onloop.cli.policy import register

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """onloop (test harness)."""

    register(app)
    return app


runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(make_app(), ["policy", *args])
    return result.exit_code, result.output


def test_show_defaults_without_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = invoke("show")
    assert code == 0
    assert "defaults (no onloop.toml here)" in out
    assert "network" in out and "none  [default]" in out
    assert "(none: the agent may run no command)" in out


def test_show_marks_values_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "onloop.toml").write_text(
        '[policy]\nnetwork = "model-only"\n[policy.limits]\ncpu = "10m"\n'
        '[policy.actions.test]\nargv = ["pytest", "-q"]\n'
    )
    monkeypatch.chdir(tmp_path)
    code, out = invoke("show", "--json")
    assert code == 0
    rows = {row["key"]: row for row in json.loads(out)}
    assert rows["network"] == {"key": "network", "value": "model-only", "source": "onloop.toml"}
    assert rows["limits.cpu"]["value"] == "600" and rows["limits.cpu"]["source"] == "onloop.toml"
    assert rows["limits.memory"]["source"] == "default"
    assert rows["actions.test"]["value"].startswith("pytest -q")
    assert rows["sandbox"]["source"] == "default"


def test_check_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "onloop.toml").write_text('[policy]\nnetwork = "model-only"\n')
    monkeypatch.chdir(tmp_path)
    code, out = invoke("check")
    assert code == 0, out
    assert "valid" in out and "OK    bwrap" in out and "socat" in out


def test_check_invalid_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "onloop.toml"
    config.write_text('[policy]\nwritable = [".github"]\n')
    code, out = invoke("check", "--config", str(config))
    assert code == 2
    assert "policy.writable" in out and "also protected" in out
    code, _ = invoke("show", "--config", str(config))
    assert code == 2


def test_check_blocked_when_bwrap_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out = invoke("check")
    assert code == 16
    assert "FAIL  bwrap" in out and "apt-get install bubblewrap" in out


def test_check_sandbox_none_is_loud(tmp_path: Path) -> None:
    config = tmp_path / "onloop.toml"
    config.write_text('[policy]\nsandbox = "none"\n')
    code, out = invoke("check", "--config", str(config))
    assert code == 0
    assert "UNSANDBOXED" in out and "WARN" in out
