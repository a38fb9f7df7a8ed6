"""Anti-hallucination checks after every iteration: the verification is external to the generator.

Three checks from `onloop.gates.hallucination`, over what the iteration really changed: dependencies
added to a manifest must exist in their registry, imports must resolve somewhere, and files the final
message claims to have changed must be in the diff. A hit is an incident of kind `hallucination`; a
made-up dependency or import also blocks "done". A registry that cannot be asked (offline, or real calls
switched off in tests) gives "could not verify", recorded as a warning, never as a silent pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onloop.config import HallucinationConfig
from onloop.gates.hallucination import (
    CachedRegistryClient,
    Ecosystem,
    Exists,
    Finding,
    HttpRegistryClient,
    RegistryClient,
    check_claimed_paths,
    check_dependencies,
    check_imports,
    find_spec_in,
    manifest_dependencies,
)
from onloop.safety import is_loopback_url, real_calls_allowed
from onloop.workspace import show_file

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


def registry_client(config: HallucinationConfig) -> RegistryClient:
    client = HttpRegistryClient(config.registries or None)
    if not real_calls_allowed():
        return _LoopbackOnly(client)
    return CachedRegistryClient(client)


def _is_manifest(path: str) -> bool:
    name = Path(path).name
    return name in MANIFESTS or (name.startswith("requirements") and name.endswith(".txt"))


def check_iteration(worktree: Path, previous: str, changed: Sequence[str], final_message: str,
                    config: HallucinationConfig) -> list[Finding]:
    findings: list[Finding] = []
    current = {p: (worktree / p).read_text(errors="replace") for p in changed if (worktree / p).is_file()}
    if config.dependencies:
        manifests = [(p, show_file(worktree, previous, p), current.get(p)) for p in changed if _is_manifest(p)]
        if manifests:
            findings += check_dependencies(manifests, registry_client(config))
    if config.imports:
        sources = {p: text for p, text in current.items() if p.endswith(".py")}
        if sources:
            installed = find_spec_in(config.python) if config.python else None
            findings += check_imports(sources, repo_root=worktree, declared=_declared(worktree),
                                      installed=installed)
    if config.claimed_paths:
        findings += check_claimed_paths(final_message, list(changed))
    return findings


def _declared(worktree: Path) -> set[str]:
    names: set[str] = set()
    for manifest in (worktree / "pyproject.toml", *worktree.glob("requirements*.txt")):
        if manifest.is_file():
            rel = manifest.relative_to(worktree).as_posix()
            names |= {dep.name for dep in manifest_dependencies(rel, manifest.read_text(errors="replace"))}
    return names
