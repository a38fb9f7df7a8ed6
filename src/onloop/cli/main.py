"""The `onloop` command: thin commands over the same functions the dashboard and automations call.

Every command turns an `OnloopError` into a one-line message on stderr and its exit code (2 for the
operator's mistakes); a run's exit code is its stop reason's (see the README's table).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from onloop.errors import OnloopError

app = typer.Typer(
    name="onloop",
    help="Run AI coding agents unattended, in verified loops, on git repositories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(exc: OnloopError) -> None:
    typer.echo(f"onloop: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="the repository to set up")] = Path("."),
    force: Annotated[bool, typer.Option(help="overwrite existing files")] = False,
) -> None:
    """Scaffold onloop.toml (every key documented), PROMPT.md, specs/, IMPLEMENTATION_PLAN.md, AGENTS.md."""
    from onloop.init import detect_test_command, scaffold
    from onloop.workspace import repo_root

    try:
        root = repo_root(path.resolve())
    except OnloopError as exc:
        _fail(exc)
    written = scaffold(root, force=force)
    command = detect_test_command(root)
    for item in written:
        typer.echo(f"wrote {item.relative_to(root)}")
    if not written:
        typer.echo("nothing to do: every file exists (use --force to overwrite)")
    typer.echo(f"test gate: {' '.join(command)}" if command else
               "no test command detected: set [gates.tests] command in onloop.toml")


@app.command()
def run(
    path: Annotated[Path, typer.Option("--path", "-C", help="the workspace (a git repository)")] = Path("."),
    mode: Annotated[str | None, typer.Option(help="build (work the plan) or plan (regenerate it)")] = None,
    max_iterations: Annotated[int | None, typer.Option(help="iteration cap")] = None,
    max_time: Annotated[str | None, typer.Option(help="wall-clock cap, e.g. 2h or 30m")] = None,
    budget: Annotated[str | None, typer.Option(help="money cap in USD, e.g. 5.00")] = None,
    backend: Annotated[str | None, typer.Option(help="backend name (overrides run.backend)")] = None,
    resume: Annotated[str | None, typer.Option(help="resume the run with this id")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the outcome")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="JSON lines of events on stdout")] = False,
    policy: Annotated[
        Path | None, typer.Option(help="a TOML file whose [policy] overrides onloop.toml's for this run")
    ] = None,
) -> None:
    """Run the loop until it stops; the exit code says why (0 = verified done)."""
    from onloop.cli.commands import do_run

    try:
        code = do_run(path, mode=mode, max_iterations=max_iterations, max_time=max_time, budget=budget,
                      backend=backend, resume=resume, quiet=quiet, json_output=json_output, policy=policy)
    except OnloopError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(help="copy the example here instead of a temp dir")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Run a real multi-iteration loop on a bundled example repository (no network, no API key)."""
    from onloop.demo import run_demo

    try:
        code = run_demo(keep, quiet=quiet)
    except OnloopError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def status() -> None:
    """Runs that are going on now, and the last few that stopped."""
    from onloop.cli.commands import do_status

    do_status()


@app.command()
def runs(limit: Annotated[int, typer.Option(help="how many")] = 20) -> None:
    """All runs, newest first."""
    from onloop.cli.commands import do_runs

    do_runs(limit)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    iteration: Annotated[int | None, typer.Option("--iteration", "-i", help="one iteration's receipt")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's receipts table, or one iteration: receipt, diff stat, gates, incidents, transcript path."""
    from onloop.cli.commands import do_show

    try:
        do_show(run_id, iteration, json_output)
    except OnloopError as exc:
        _fail(exc)


@app.command()
def log(
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new events")] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's event stream."""
    from onloop.cli.commands import do_log

    try:
        do_log(run_id, follow, json_output)
    except OnloopError as exc:
        _fail(exc)


@app.command()
def steer(
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    command: Annotated[str, typer.Argument(help="pause | resume | stop | say")],
    message: Annotated[str | None, typer.Argument(help="for say: the message for the next iteration")] = None,
) -> None:
    """Steer a live run: pause, resume, stop, or say something at the top of the next iteration."""
    from onloop.cli.commands import do_steer

    try:
        do_steer(run_id, command, message)
    except OnloopError as exc:
        _fail(exc)


def _register_subcommands() -> None:
    """Sub-apps of other subsystems register themselves (each module has a `register(app)`)."""
    import importlib

    for name in ("policy", "memory", "condense", "quarantine", "registry"):
        try:
            module = importlib.import_module(f"onloop.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"onloop.cli.{name}":
                raise
            continue
        module.register(app)


_register_subcommands()


def main() -> None:
    try:
        app()
    except OnloopError as exc:  # raised outside a command body (option parsing callbacks)
        print(f"onloop: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
