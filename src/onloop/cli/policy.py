"""`onloop policy show` and `onloop policy check`: thin commands over `onloop.policy.effective` and
`onloop.policy.visibility`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from onloop.config import load_config
from onloop.errors import OnloopError
from onloop.policy.effective import check_policy, exit_code_for, load_policy, policy_rows
from onloop.policy.visibility import Problem, Resolution, VisibilityError, check_config, readable_line, shown

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="onloop.toml to read (default: ./onloop.toml)")
]


def register(app: typer.Typer) -> None:
    """Add the `policy` sub-app to `app`."""
    policy_app = typer.Typer(help="Show and check the guardrail policy.", no_args_is_help=True)
    policy_app.command("show")(show)
    policy_app.command("check")(check)
    app.add_typer(policy_app, name="policy")


def show(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print the effective policy and where each value came from (default or onloop.toml)."""
    try:
        loaded = load_policy(config)
    except OnloopError as exc:
        _fail(exc)
    rows = policy_rows(loaded)
    if as_json:
        typer.echo(json.dumps([{"key": r.key, "value": r.value, "source": r.source} for r in rows], indent=2))
        return
    typer.echo(f"policy from {loaded.path or 'defaults (no onloop.toml here)'}")
    width = max(len(r.key) for r in rows)
    for row in rows:
        typer.echo(f"  {row.key:<{width}}  {row.value}  [{row.source}]")


def check(config: ConfigOption = None) -> None:
    """Validate the policy, check that this machine can enforce it, and that the sandbox sees every
    program the gates and backends start (exit 2 invalid or not visible, 16 blocked)."""
    try:
        loaded = load_policy(config)
        programs = check_config(load_config(loaded.path), loaded.path.parent.resolve()) if loaded.path else []
    except OnloopError as exc:
        _fail(exc)
    typer.echo(f"policy from {loaded.path or 'defaults (no onloop.toml here)'}: valid")
    results = check_policy(loaded.policy)
    for result in results:
        typer.echo(f"  {result.status.upper():<4}  {result.name}: {result.detail}")
    for item in programs:
        if isinstance(item, Resolution):
            files = " -> ".join(shown(path) for path in item.files)
            typer.echo(f"  OK    {item.program.key}: `{item.program.name}` runs {files}")
        else:
            typer.echo(f"  FAIL  {item.message(loaded.policy.readable)}")
    problems = [item for item in programs if isinstance(item, Problem)]
    added = [path for problem in problems for path in problem.readable]
    if len(problems) > 1 and added:
        typer.echo(f"  all at once: {readable_line(loaded.policy.readable, added)} under [policy] in onloop.toml")
    code = exit_code_for(results)
    if code:
        typer.echo("blocked: runs under this policy would refuse to start", err=True)
    elif problems:
        code = VisibilityError.exit_code
        typer.echo("refused: runs would not start while the sandbox cannot see these programs", err=True)
    if code:
        raise typer.Exit(code)


def _fail(exc: OnloopError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)
