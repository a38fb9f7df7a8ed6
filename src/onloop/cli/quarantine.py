"""`onloop quarantine`: the flaky checks onloop set aside (per run, on evidence), confirming them for the
workspace, and taking them back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

quarantine_app = typer.Typer(help="Flaky checks: they neither block done nor count as progress.",
                             no_args_is_help=True)


@quarantine_app.command("list")
def list_command(
    workspace: Annotated[Path | None, typer.Option("--path", "-C", help="only this workspace")] = None,
) -> None:
    """Every quarantined check: its scope (a run, or the workspace), when it was seen flaky and how often."""
    from onloop.store import quarantine
    from onloop.store.db import Database

    root = str(workspace.resolve()) if workspace else None
    table = Table(title="quarantined checks")
    for column in ("workspace", "gate", "check", "scope", "times", "first seen", "last seen"):
        table.add_column(column, overflow="fold")
    for row in quarantine.list_all(Database.open_default(), root):
        scope = f"run {row['scope']}" if row["scope"] else "workspace"
        table.add_row(row["workspace"], row["gate"], row["check_id"], scope, str(row["times"]), row["first_seen"],
                      row["last_seen"])
    Console(highlight=False).print(table)


@quarantine_app.command("remove")
def remove_command(
    gate: Annotated[str, typer.Argument(help="the gate's name")],
    check: Annotated[str, typer.Argument(help="the check id")],
    workspace: Annotated[Path, typer.Option("--path", "-C", help="the workspace")] = Path("."),
) -> None:
    """Take a check out of quarantine: it blocks and counts again."""
    from onloop.store import quarantine
    from onloop.store.db import Database
    from onloop.workspace import repo_root

    removed = quarantine.remove(Database.open_default(), str(repo_root(workspace.resolve())), gate, check)
    if not removed:
        typer.echo(f"onloop: {check!r} of gate {gate!r} is not in quarantine", err=True)
        raise typer.Exit(2)
    typer.echo(f"removed {check} ({gate}) from quarantine")


@quarantine_app.command("confirm")
def confirm_command(
    gate: Annotated[str, typer.Argument(help="the gate's name")],
    check: Annotated[str, typer.Argument(help="the check id")],
    workspace: Annotated[Path, typer.Option("--path", "-C", help="the workspace")] = Path("."),
) -> None:
    """Confirm a check a run found flaky: from now on it is quarantined for every run of the workspace."""
    from onloop.clock import SystemClock, utc_iso
    from onloop.store import quarantine
    from onloop.store.db import Database
    from onloop.workspace import repo_root

    root = str(repo_root(workspace.resolve()))
    if not quarantine.confirm(Database.open_default(), root, gate, check, utc_iso(SystemClock().now())):
        typer.echo(f"onloop: no run found {check!r} of gate {gate!r} flaky in {root}", err=True)
        raise typer.Exit(2)
    typer.echo(f"confirmed: {check} ({gate}) is quarantined for every run of {root}")


def register(app: typer.Typer) -> None:
    app.add_typer(quarantine_app, name="quarantine")
