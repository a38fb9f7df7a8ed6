"""Anti-hallucination checks after every iteration: the verification is external to the generator.

Three checks from `onloop.gates.hallucination`:

- dependencies and imports are checked over everything the branch changed since the run's BASE commit
  (base content against current), not just this iteration's diff, so a made-up package blocks "done"
  for as long as the branch contains it, and stops being reported the moment it is removed;
- files the final message claims to have changed are checked against this iteration's changes.

Dependency names are verified offline by default (`onloop.gates.registry`): names the operator chose
(the base commit's lock files and manifests, the installed environment), the index synced with
`onloop registry sync`, and earlier online answers. No agent-chosen string leaves the host unless
`hallucination.online` is true and the policy's network is not "none". A name nobody can vouch for is
"could not verify", never a silent pass.

Work is done once where it can be: the base commit is read once per (worktree, base) and the installed
environment once per process; per iteration, each added name costs at most one SQLite query.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from onloop.config import HallucinationConfig
from onloop.errors import WorkspaceError
from onloop.gates.hallucination import (
    Ecosystem,
    Exists,
    Finding,
    HttpRegistryClient,
    NameKey,
    RegistryClient,
    check_claimed_paths,
    check_dependencies,
    check_imports,
    find_spec_in,
    imported_modules,
    is_lock_file,
    lock_file_names,
    manifest_dependencies,
    normalise_name,
)
from onloop.gates.registry import (
    CachedRegistryClient,
    OfflineFirstClient,
    OfflineRegistryClient,
    RegistryStore,
    installed_names,
)
from onloop.safety import is_loopback_url, real_calls_allowed

MANIFESTS = ("pyproject.toml", "package.json", "Cargo.toml")
BLOCKING = ("dependency", "import")


class _LoopbackOnly:
    """While real calls are switched off (tests), a registry off this machine is honestly "could not
    verify" instead of being asked."""

    def __init__(self, inner: HttpRegistryClient) -> None:
        self.inner = inner

    def exists(self, ecosystem: Ecosystem, name: str) -> Exists:
        if not is_loopback_url(self.inner.base_urls[ecosystem]):
            return None
        return self.inner.exists(ecosystem, name)


def online_allowed(config: HallucinationConfig, network: str) -> bool:
    """Online lookups send agent-chosen names off the host: only when the operator asked for them and
    the policy lets the run use the network at all."""
    return config.online and network != "none"


def _online_note(config: HallucinationConfig, network: str) -> str:
    if not config.online:
        return "hallucination.online = false"
    return f'policy.network = "{network}"' if network == "none" else ""


def registry_client(config: HallucinationConfig, *, network: str,
                    known: Sequence[Collection[NameKey]] = ()) -> RegistryClient:
    """Offline data only, unless online lookups are allowed; then offline data first."""
    store = RegistryStore()
    offline = OfflineRegistryClient(store, known, online_note=_online_note(config, network))
    if not online_allowed(config, network):
        return offline
    http = HttpRegistryClient(config.registries or None)
    online = CachedRegistryClient(http if real_calls_allowed() else _LoopbackOnly(http), store.path)
    return OfflineFirstClient(offline, online)


def is_manifest(path: str) -> bool:
    name = Path(path).name
    return name in MANIFESTS or (name.startswith("requirements") and name.endswith(".txt"))


def check_iteration(
    worktree: Path,
    base: str,
    changed_since_base: Sequence[str],
    changed_this_iteration: Sequence[str],
    final_message: str,
    config: HallucinationConfig,
    *,
    network: str,
) -> list[Finding]:
    """Findings for the branch as it is now (dependencies, imports) and for this iteration (claims).

    `base` is the run's base commit, `changed_since_base` every path that differs between it and the
    worktree, `changed_this_iteration` the iteration's own changes, `network` the policy's network.
    """
    findings: list[Finding] = []
    snapshot = base_snapshot(worktree, base) if config.dependencies or config.imports else None
    if config.dependencies and snapshot is not None:
        findings += _dependency_findings(worktree, snapshot, changed_since_base, config, network)
    if config.imports and snapshot is not None:
        findings += _import_findings(worktree, snapshot, changed_since_base, config)
    if config.claimed_paths:
        findings += check_claimed_paths(final_message, list(changed_this_iteration))
    return findings


def _dependency_findings(worktree: Path, snapshot: BaseSnapshot, changed: Sequence[str],
                         config: HallucinationConfig, network: str) -> list[Finding]:
    paths = [p for p in changed if is_manifest(p)]
    if not paths:
        return []
    before = snapshot.texts(paths)
    manifests = [(p, before[p], _current(worktree, p)) for p in paths]
    known = [snapshot.known, installed_names(config.python, worktree)]
    return check_dependencies(manifests, registry_client(config, network=network, known=known))


def _import_findings(worktree: Path, snapshot: BaseSnapshot, changed: Sequence[str],
                     config: HallucinationConfig) -> list[Finding]:
    current = {p: text for p in changed if p.endswith(".py") and (text := _current(worktree, p)) is not None}
    if not current:
        return []
    before = snapshot.texts(list(current))
    already = {m for text in before.values() if text for m in imported_modules(text)}
    installed = _spec_predicate(config.python) if config.python else None
    return check_imports(current, repo_root=worktree, declared=_declared(worktree), installed=installed,
                         already_imported=already)


@lru_cache(maxsize=8)
def _spec_predicate(python: str) -> Callable[[str], bool]:
    """One predicate per interpreter per process, so each module is asked about once, not per iteration."""
    return find_spec_in(python)


def _current(worktree: Path, path: str) -> str | None:
    """A file's content now, if it is a file of the worktree. The agent may have made the path a
    symlink to a host file: reading that would hand its lines back (as findings and feedback)."""
    target = (worktree / path).resolve()
    if not target.is_relative_to(worktree.resolve()) or not target.is_file():
        return None
    return target.read_text(errors="replace")


def _declared(worktree: Path) -> set[str]:
    names: set[str] = set()
    for manifest in (worktree / "pyproject.toml", *worktree.glob("requirements*.txt")):
        if manifest.is_file():
            rel = manifest.relative_to(worktree).as_posix()
            names |= {dep.name for dep in manifest_dependencies(rel, manifest.read_text(errors="replace"))}
    return names


# ------------------------------------------------------------------------------------- base commit


class BaseSnapshot:
    """What the run's base commit holds, read lazily and kept: a commit's content never changes.

    `known` are the names the operator chose there (lock files and manifests); `texts` gives the base
    content of paths, each read from git once, in one `git cat-file --batch` for all that are new.
    """

    def __init__(self, worktree: Path, base: str) -> None:
        self.worktree, self.base = worktree, base
        self.blobs = _tree_blobs(worktree, base)
        self._texts: dict[str, str | None] = {}
        wanted = [p for p in self.blobs if is_lock_file(p) or is_manifest(p)]
        self.known = _names_in(self.texts(wanted).items())

    def texts(self, paths: Iterable[str]) -> dict[str, str | None]:
        paths = list(dict.fromkeys(paths))
        missing = [p for p in paths if p not in self._texts and p in self.blobs]
        for path, text in zip(missing, _read_blobs(self.worktree, [self.blobs[p] for p in missing]), strict=True):
            self._texts[path] = text
        return {p: self._texts.get(p) for p in paths}


@lru_cache(maxsize=16)
def base_snapshot(worktree: Path, base: str) -> BaseSnapshot:
    return BaseSnapshot(worktree, base)


def _names_in(files: Iterable[tuple[str, str | None]]) -> frozenset[NameKey]:
    names: set[NameKey] = set()
    for path, text in files:
        names |= lock_file_names(path, text)
        names |= {(d.ecosystem, normalise_name(d.ecosystem, d.name)) for d in manifest_dependencies(path, text)}
    return frozenset(names)


def _git_bytes(worktree: Path, args: Sequence[str], stdin: bytes | None = None) -> bytes:
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    done = subprocess.run(["git", *args], cwd=worktree, input=stdin, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args[:2])} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _tree_blobs(worktree: Path, commit: str) -> dict[str, str]:
    """Every file of `commit`, path to blob id (NUL-separated, so any file name is read right)."""
    blobs: dict[str, str] = {}
    for entry in _git_bytes(worktree, ["ls-tree", "-r", "-z", "--full-tree", commit]).split(b"\0"):
        meta, _, path = entry.partition(b"\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == b"blob":
            blobs[os.fsdecode(path)] = parts[2].decode()
    return blobs


def _read_blobs(worktree: Path, ids: Sequence[str]) -> list[str | None]:
    """The content of blobs by id, all in one process: `<id> blob <size>\\n<bytes>\\n` each."""
    if not ids:
        return []
    out = _git_bytes(worktree, ["cat-file", "--batch"], "".join(f"{i}\n" for i in ids).encode())
    texts: list[str | None] = []
    pos = 0
    for _ in ids:
        end = out.index(b"\n", pos)
        parts = out[pos:end].split()
        pos = end + 1
        if len(parts) != 3 or not parts[2].isdigit():
            texts.append(None)  # "<id> missing"
            continue
        size = int(parts[2])
        texts.append(out[pos:pos + size].decode(errors="replace") if parts[1] == b"blob" else None)
        pos += size + 1
    return texts
