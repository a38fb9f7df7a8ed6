"""The project's identity and structured profile, detected from the repository, never by a model.

Identity: the normalized `origin` URL when there is one (so clones on two machines share memory),
else the root commit (so worktrees of one repository share it, like Claude Code's project memory).

Profile: language, package manager, commands, default branch, CI and protected paths, read from marker
files and `onloop.toml`. Its values are scrubbed for secrets and personal data and capped at 200
characters before anyone sees them. Detection spawns git, so the result is cached per workspace path
with a fingerprint (size and mtime of the marker files): the per-iteration render stays a few
database reads, and an edited `pyproject.toml` still refreshes the profile.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from onloop.memory import safety
from onloop.memory.proposals import overrides
from onloop.memory.repo import MemoryRepo

PROFILE_FIELD_ORDER = (
    "language",
    "package_manager",
    "test_cmd",
    "lint_cmd",
    "typecheck_cmd",
    "build_cmd",
    "default_branch",
    "ci",
    "protected_paths",
)
MAX_SCALAR = 200
MARKERS = (
    "onloop.toml", "pyproject.toml", "setup.py", "uv.lock", "poetry.lock", "requirements.txt",
    "package.json", "pnpm-lock.yaml", "yarn.lock", "package-lock.json", "bun.lockb", "tsconfig.json",
    "Cargo.toml", "go.mod", "Gemfile", "pom.xml", "build.gradle", "Makefile", ".github/workflows",
    ".gitlab-ci.yml", ".git/HEAD",
)
Profile = dict[str, Any]


def _git(workspace: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=workspace, capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def normalize_remote(url: str) -> str:
    """`git@github.com:Org/Repo.git` and `https://user@github.com/org/repo` are one project."""
    value = url.strip()
    value = re.sub(r"^[a-z+]+://", "", value)
    value = re.sub(r"^[^@/]+@", "", value)
    value = value.replace(":", "/", 1) if "/" not in value.split(":", 1)[0] else value
    value = re.sub(r"\.git/?$", "", value).rstrip("/")
    return value.lower()


def detect_project_id(workspace: Path) -> str:
    remote = _git(workspace, "remote", "get-url", "origin")
    if remote:
        basis = "remote:" + normalize_remote(remote)
    else:
        roots = sorted(_git(workspace, "rev-list", "--max-parents=0", "HEAD").split())
        basis = "root:" + (roots[0] if roots else str(workspace.resolve()))
    return "p_" + hashlib.sha256(basis.encode()).hexdigest()[:12]


def _language(ws: Path) -> str | None:
    for marker, language in (
        ("pyproject.toml", "python"), ("setup.py", "python"), ("requirements.txt", "python"),
        ("Cargo.toml", "rust"), ("go.mod", "go"), ("tsconfig.json", "typescript"),
        ("package.json", "javascript"), ("Gemfile", "ruby"), ("pom.xml", "java"), ("build.gradle", "java"),
    ):
        if (ws / marker).exists():
            return language
    return None


def _package_manager(ws: Path) -> str | None:
    for marker, manager in (
        ("uv.lock", "uv"), ("poetry.lock", "poetry"), ("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"),
        ("bun.lockb", "bun"), ("package-lock.json", "npm"), ("Cargo.toml", "cargo"), ("go.mod", "go"),
        ("requirements.txt", "pip"), ("pyproject.toml", "pip"),
    ):
        if (ws / marker).exists():
            return manager
    return None


def _ci(ws: Path) -> str | None:
    if (ws / ".github" / "workflows").is_dir():
        return "github-actions"
    if (ws / ".gitlab-ci.yml").exists():
        return "gitlab-ci"
    return None


def _from_onloop_toml(ws: Path) -> Profile:
    """Gate commands and protected paths the operator configured; a broken file adds nothing."""
    from onloop.config import load_config
    from onloop.errors import ConfigError

    if not (ws / "onloop.toml").exists():
        return {}
    try:
        config = load_config(ws / "onloop.toml")
    except ConfigError:
        return {}
    found: Profile = {}
    for field, names in (("test_cmd", ("test", "tests")), ("lint_cmd", ("lint",)),
                         ("typecheck_cmd", ("types", "typecheck", "mypy")), ("build_cmd", ("build",))):
        for name in names:
            command = config.gates[name].command if name in config.gates else None
            if command:
                found[field] = " ".join(command).replace("{junit}", "report.xml")
                break
    found["protected_paths"] = list(config.policy.protected)
    return found


def detect_profile(workspace: Path) -> Profile:
    """The profile in PROFILE_FIELD_ORDER, empty values omitted, values scrubbed and capped."""
    raw: Profile = {
        "language": _language(workspace),
        "package_manager": _package_manager(workspace),
        "default_branch": _default_branch(workspace),
        "ci": _ci(workspace),
        **_from_onloop_toml(workspace),
    }
    return clean_profile(raw)


def _default_branch(ws: Path) -> str | None:
    head = _git(ws, "symbolic-ref", "--short", "refs/remotes/origin/HEAD")
    if head:
        return head.split("/", 1)[-1]
    return _git(ws, "symbolic-ref", "--short", "HEAD") or None


_OUR_TAGS = re.compile(r"(?i)</?(system|instructions|memory_policy|memories|project_profile)>")


def _clean_scalar(value: Any) -> str:
    # A profile value comes from repository files, which an agent can edit: it must not be able to
    # close the profile block and open one of ours.
    text = _OUR_TAGS.sub("", safety.scrub(str(value)))
    return text if len(text) <= MAX_SCALAR else text[: MAX_SCALAR - 1] + "…"


def clean_profile(raw: Profile) -> Profile:
    """Order keys explicitly, drop None and empty values, scrub and cap every scalar."""
    out: Profile = {}
    for key in PROFILE_FIELD_ORDER:
        value = raw.get(key)
        if value is None or value == "" or value == [] or value == {}:
            continue
        out[key] = [_clean_scalar(item) for item in value] if isinstance(value, list) else _clean_scalar(value)
    return out


def fingerprint(workspace: Path) -> str:
    parts = []
    for marker in MARKERS:
        try:
            stat = (workspace / marker).stat()
        except OSError:
            continue
        parts.append(f"{marker}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def project_identity(repo: MemoryRepo, workspace: Path) -> tuple[str, Profile]:
    """(project_id, profile) for a workspace, from the cache when the marker files did not change."""
    key = str(workspace.resolve())
    current = fingerprint(workspace)
    row = repo.db.conn.execute(
        "SELECT project_id, fingerprint, profile_json FROM memory_workspaces WHERE workspace = ?", (key,)
    ).fetchone()
    if row is not None and row["fingerprint"] == current:
        profile: Profile = json.loads(row["profile_json"])
        return str(row["project_id"]), profile
    project_id = row["project_id"] if row is not None else detect_project_id(workspace)
    approved = overrides(repo.db, str(project_id))
    profile = detect_profile(workspace) if not approved else clean_profile({**detect_profile(workspace), **approved})
    with repo.tx() as conn:
        conn.execute(
            "INSERT INTO memory_workspaces (workspace, project_id, fingerprint, profile_json, detected_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT(workspace) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "profile_json = excluded.profile_json, detected_at = excluded.detected_at",
            (key, project_id, current, json.dumps(profile), repo.now()),
        )
    return str(project_id), profile
