"""`onloop policy show` and `onloop policy check`: thin commands over `onloop.policy.effective`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from onloop.errors import OnloopError
from onloop.policy.effective import check_policy, exit_code_for, load_policy, policy_rows

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
    """Validate the policy and check that this machine can enforce it (exit 2 invalid, 16 blocked)."""
    try:
        loaded = load_policy(config)
    except OnloopError as exc:
        _fail(exc)
    typer.echo(f"policy from {loaded.path or 'defaults (no onloop.toml here)'}: valid")
    results = check_policy(loaded.policy)
    for result in results:
        typer.echo(f"  {result.status.upper():<4}  {result.name}: {result.detail}")
    code = exit_code_for(results)
    if code:
        typer.echo("blocked: runs under this policy would refuse to start", err=True)
        raise typer.Exit(code)


def _fail(exc: OnloopError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)
