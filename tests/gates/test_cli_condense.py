"""`onloop condense`, through typer's runner on an app that registers the command as the lead will."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from onloop.cli.condense import register

DATA = Path(__file__).resolve().parent.parent / "data" / "gates"


def app() -> typer.Typer:
    application = typer.Typer()
    register(application)

    @application.command("version")
    def version() -> None:  # a second command, so typer keeps `condense` as a subcommand
        typer.echo("0")

    return application


def test_condense_file_text() -> None:
    result = CliRunner().invoke(app(), ["condense", str(DATA / "pytest-vv-long-packaging-specifiers.log")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("61 failing checks (61 failed)")
    assert "tests/test_specifiers.py::TestSpecifier::test_specifiers" in result.output


def test_condense_stdin_json_with_format_and_budget() -> None:
    text = (DATA / "mypy.jsonl").read_text()
    result = CliRunner().invoke(app(), ["condense", "-", "--format", "mypy", "--budget", "2000", "--json"], input=text)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["failing_ids"]) == 9
    assert data["tokens_estimate"] <= 2000
    assert all(i in data["text"] for i in data["failing_ids"])


def test_condense_profile_format() -> None:
    result = CliRunner().invoke(app(), ["condense", str(DATA / "samples" / "perf-script.txt"), "-f", "perf"])
    assert result.exit_code == 0
    assert result.output.startswith("perf profile: 4 samples")


def test_condense_errors_are_usage_errors() -> None:
    missing = CliRunner().invoke(app(), ["condense", "/nonexistent/file.log"])
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad_format = CliRunner().invoke(app(), ["condense", str(DATA / "mypy.txt"), "--format", "nope"])
    assert bad_format.exit_code == 2 and "unknown format" in bad_format.output
    bad_profile = CliRunner().invoke(app(), ["condense", "-", "--format", "speedscope"], input="{not json")
    assert bad_profile.exit_code == 2 and "cannot read" in bad_profile.output
