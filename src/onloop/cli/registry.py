"""`onloop registry`: the offline package index data the dependency check answers from.

The operator runs the sync; it downloads a whole index (or imports a names list) and sends nothing an
agent chose, which is why it may use the network when a run's check may not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from onloop.errors import OnloopError

registry_app = typer.Typer(help="Offline package index data for the dependency check: sync it, see what is there.",
                           no_args_is_help=True)


@registry_app.command("sync")
def sync_command(
    ecosystem: Annotated[str, typer.Argument(help="pypi, npm or crates")] = "pypi",
    url: Annotated[str | None, typer.Option(help="pypi only: the index to download (default https://pypi.org)")] = None,
    from_file: Annotated[Path | None, typer.Option("--from", help="import a names list, one per line")] = None,
    partial: Annotated[bool, typer.Option(
        "--partial", help="the list is not the whole registry: names missing from it are unverified, not made up"
    )] = False,
) -> None:
    """Download the PyPI index, or import a names list (npm and crates have no full list online)."""
    from onloop.gates.registry import RegistryStore, sync

    try:
        index = sync(RegistryStore(), ecosystem, url=url, from_file=from_file, partial=partial)
    except OnloopError as exc:
        _fail(exc)
    extent = "the whole registry" if index.complete else "a partial list"
    typer.echo(f"synced {index.ecosystem}: {index.names} names from {index.source} ({extent})")


@registry_app.command("status")
def status_command() -> None:
    """Per ecosystem: how many names, when they were synced, and where from."""
    from onloop.gates.hallucination import ECOSYSTEMS
    from onloop.gates.registry import RegistryStore

    store = RegistryStore()
    indexes = store.indexes()
    for ecosystem in ECOSYSTEMS:
        index = indexes.get(ecosystem)
        if index is None:
            typer.echo(f"{ecosystem}: not synced")
            continue
        extent = "complete" if index.complete else "partial"
        typer.echo(f"{ecosystem}: {index.names} names, synced {index.synced_at_iso}, source {index.source} ({extent})")
    typer.echo(f"stored in {store.path}")


def _fail(exc: OnloopError) -> NoReturn:
    typer.echo(f"onloop: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
