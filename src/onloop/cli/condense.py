"""`onloop condense FILE`: a tool's noisy output in the few lines a model needs.

Thin on purpose: reading the file and printing are here, everything else is `condense_text`, the same
function the loop uses for the next iteration's failure summary.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Annotated

import typer

from onloop.gates.condense import PROFILE_FORMATS, Condensed, condense_file, condense_text
from onloop.gates.parsers import registry


def _condense(file: str, fmt: str, budget: int) -> Condensed:
    if file == "-":
        return condense_text(sys.stdin.buffer.read().decode("utf-8", "replace"), fmt, token_budget=budget)
    path = Path(file)
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    return condense_file(path, fmt, token_budget=budget)  # reads only the tail of a big pytest log


def condense_command(
    file: Annotated[str, typer.Argument(help="The output to condense, or - for stdin.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="auto, a gate parser name, or a profile format "
                                     "(speedscope, perf, xctrace).")] = "auto",
    budget: Annotated[int, typer.Option("--budget", "-b", min=1, help="Token budget (tokens ~ chars / 4).")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of text.")] = False,
) -> None:
    """Condense test, lint, type-check or profiler output to what a model needs."""
    allowed = ["auto", *registry.names(), *PROFILE_FORMATS]
    if fmt not in allowed:
        raise typer.BadParameter(f"unknown format {fmt!r}; allowed: {', '.join(allowed)}", param_hint="--format")
    try:
        condensed = _condense(file, fmt, budget)
    except (ValueError, KeyError, TypeError, ET.ParseError) as exc:
        # A profile that does not parse as the format it claims: say so instead of a traceback.
        raise typer.BadParameter(f"cannot read {file} as {fmt}: {exc}", param_hint="FILE") from exc
    if as_json:
        typer.echo(json.dumps({"text": condensed.text, "failing_ids": list(condensed.failing_ids),
                               "tokens_estimate": condensed.tokens_estimate}, indent=2))
    else:
        typer.echo(condensed.text)


def register(app: typer.Typer) -> None:
    app.command("condense")(condense_command)
