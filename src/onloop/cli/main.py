"""The `onloop` command: thin commands over the same functions the dashboard and automations call.

Every command turns an `OnloopError` into a one-line message on stderr and its exit code (2 for the
operator's mistakes); a run's exit code is its stop reason's (see the README's table).

Importing this module stays cheap, so that `onloop --help` and `onloop --version` answer at once: the
commands here import what they need inside their bodies, and the sub-apps other subsystems register
(`onloop.cli.<module>.register(app)`, which import the config, the policy and pydantic) are loaded only
when one of their commands is invoked. Until then `onloop --help` shows them from `LAZY_COMMANDS`; a
test keeps those lines equal to the modules' own help.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from onloop.errors import OnloopError

if TYPE_CHECKING:
    from typer._click import Command, Context

# Command name -> (module under onloop.cli, the one line `onloop --help` shows), in the help's order.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "note": ("memory", "Save a memory note for this run (for agents; reads ONLOOP_RUN_ID and ONLOOP_ITERATION)."),
    "condense": ("condense", "Condense test, lint, type-check or profiler output to what a model needs."),
    "policy": ("policy", "Show and check the guardrail policy."),
    "memory": ("memory", "See and control what agents remember."),
    "quarantine": ("quarantine", "Flaky checks: they neither block done nor count as progress."),
    "registry": ("registry", "Offline package index data for the dependency check: sync it, see what is there."),
}


class _Unloaded(TyperCommand):
    """Stands in for a sub-app's command in the help until the command is invoked."""


class LazyGroup(TyperGroup):
    """The top-level group: sub-app modules are imported when one of their commands is resolved."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, (module, short_help) in LAZY_COMMANDS.items():
            if name not in self.commands and importlib.util.find_spec(f"onloop.cli.{module}") is not None:
                self.commands[name] = _Unloaded(name, help=short_help)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and isinstance(self.commands.get(args[0]), _Unloaded):
            self.load(LAZY_COMMANDS[args[0]][0])
        return super().resolve_command(ctx, args)

    def load(self, module: str) -> None:
        """Register the sub-app module's commands on a scratch app and take them over from it."""
        scratch = typer.Typer()
        importlib.import_module(f"onloop.cli.{module}").register(scratch)
        self.commands.update(typer.main.get_group(scratch).commands)


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"onloop {version('onloop')}")
    except PackageNotFoundError:  # run from a source tree that was never installed
        typer.echo("onloop (not installed: version unknown)")
    raise typer.Exit()


app = typer.Typer(
    name="onloop",
    cls=LazyGroup,
    help="Run AI coding agents unattended, in verified loops, on git repositories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print onloop's version and exit")] = False,
) -> None:
    """Options of `onloop` itself, before the command (its help text is the app's, above)."""


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
    resume: Annotated[str | None, typer.Option(
        help="resume the run with this id; a run that already ended reports its outcome and exit code again",
    )] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the outcome")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="JSON lines of events on stdout")] = False,
    policy: Annotated[
        # No square brackets in help texts: typer reads them as rich markup and drops them, word and all.
        Path | None, typer.Option(help="a TOML file whose policy table overrides onloop.toml's for this run")
    ] = None,
    include_uncommitted: Annotated[bool, typer.Option(
        "--include-uncommitted",
        help="commit uncommitted changes to the plan, prompts, specs and AGENTS.md to the run's branch "
             "(never yours) and start from there; without it such changes stop the run before it starts",
    )] = False,
) -> None:
    """Run the loop until it stops; the exit code says why (0 = verified done)."""
    from onloop.cli.commands import do_run

    try:
        code = do_run(path, mode=mode, max_iterations=max_iterations, max_time=max_time, budget=budget,
                      backend=backend, resume=resume, quiet=quiet, json_output=json_output, policy=policy,
                      include_uncommitted=include_uncommitted)
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


def main() -> None:
    try:
        app()
    except OnloopError as exc:  # raised outside a command body (option parsing callbacks)
        print(f"onloop: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
