#!/usr/bin/env bash
# The whole test suite: lint, strict types, then every test (real git, SQLite, subprocesses, sandbox).
set -euo pipefail
cd "$(dirname "$0")"
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest -q -p no:cacheprovider -n 2 "$@"
