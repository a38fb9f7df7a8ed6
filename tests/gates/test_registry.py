"""Offline verification of dependency names: a synced index in real SQLite, the base commit's lock files,
the installed environment, cached answers; online lookups over real HTTP on 127.0.0.1 only when allowed.

The repositories are real git repositories whose commits stand for the run's base and its iterations.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onloop.config import HallucinationConfig
from onloop.errors import ConfigError, OperatorError, UsageError
from onloop.gates.hallucination import Finding, check_dependencies
from onloop.gates.registry import (
    OfflineRegistryClient,
    RegistryStore,
    SyncedIndex,
    installed_distributions,
    installed_names,
    registry_path,
    sync,
    sync_pypi,
)
from onloop.loop.hallucinations import base_snapshot, check_iteration
from onloop.safety import RealCallBlocked
from tests.conftest import git

MakeRepo = Callable[..., Path]


@dataclass
class FakeRegistry:
    """A PyPI look-alike on loopback that records every request: the simple index and per-name JSON."""

    projects: list[str]
    known: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Accept header)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests.append((self.path, self.headers.get("Accept", "")))
                if self.path == "/simple/":
                    self._answer(200, "application/vnd.pypi.simple.v1+json", json.dumps({
                        "meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in registry.projects]}))
                elif self.path.startswith("/pypi/") and self.path.endswith("/json"):
                    found = self.path.split("/")[2] in registry.known
                    self._answer(200 if found else 404, "application/json", "{}")
                else:
                    self._answer(404, "text/plain", "not here")

            def _answer(self, status: int, kind: str, body: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                return None

        return Handler


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry(projects=["Requests", "PyYAML", "zope.interface"], known={"requests", "real-but-unsynced"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def onloop(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process; ONLOOP_HOME and the real-calls switch come from conftest."""
    return subprocess.run([sys.executable, "-m", "onloop.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def names_file(tmp_path: Path, *names: str) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("# exported names\n" + "\n".join(names) + "\n\n")
    return path


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for rel, content in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


def changed(repo: Path, since: str, until: str = "HEAD") -> list[str]:
    return git(repo, "diff", "--name-only", since, until).split()


def subjects(findings: list[Finding]) -> set[tuple[str, str, str]]:
    return {(f.kind, f.category, f.subject) for f in findings}


# ---------------------------------------------------------------------------------------------- sync


def test_sync_pypi_from_a_simple_json_index_through_the_cli(registry: FakeRegistry) -> None:
    done = onloop("registry", "sync", "pypi", "--url", registry.url)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"synced pypi: 3 names from {registry.url}/simple/ (the whole registry)"
    assert registry.requests == [("/simple/", "application/vnd.pypi.simple.v1+json")]
    with sqlite3.connect(registry_path()) as db:
        rows = db.execute("SELECT name, synced_at FROM registry_names WHERE ecosystem = 'pypi'").fetchall()
    assert sorted(name for name, _ in rows) == ["pyyaml", "requests", "zope-interface"]  # normalised
    assert len({synced for _, synced in rows}) == 1 and rows[0][1] > 0

    status = onloop("registry", "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("pypi: 3 names, synced 20")
    assert lines[0].endswith(f"source {registry.url}/simple/ (complete)")
    assert lines[1:3] == ["npm: not synced", "crates: not synced"]
    assert lines[3] == f"stored in {registry_path()}"


def test_sync_from_a_names_file_for_npm_and_crates(tmp_path: Path) -> None:
    listed = names_file(tmp_path, "left-pad", "@scope/widget", "left-pad")
    done = onloop("registry", "sync", "npm", "--from", str(listed))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"synced npm: 2 names from {listed.resolve()} (the whole registry)"

    partial = onloop("registry", "sync", "crates", "--from", str(names_file(tmp_path, "serde")), "--partial")
    assert partial.returncode == 0, partial.stderr
    assert "(a partial list)" in partial.stdout

    lines = onloop("registry", "status").stdout.splitlines()
    assert lines[0] == "pypi: not synced"
    assert lines[1].startswith("npm: 2 names, synced ") and lines[1].endswith(f"source {listed.resolve()} (complete)")
    assert lines[2].startswith("crates: 1 names, synced ") and lines[2].endswith("(partial)")


def test_sync_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    no_list = onloop("registry", "sync", "npm")
    assert no_list.returncode == 2
    assert "npm has no practical full name list online: import one with --from FILE" in no_list.stderr
    assert onloop("registry", "sync", "cargo", "--from", "x").returncode == 2
    missing = onloop("registry", "sync", "npm", "--from", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "names list not found" in missing.stderr
    store = RegistryStore()
    with pytest.raises(OperatorError, match="lists no npm names"):
        sync(store, "npm", from_file=names_file(tmp_path))  # an empty list would make every name "made up"
    with pytest.raises(UsageError, match="not both"):
        sync(store, "pypi", url="http://127.0.0.1:9", from_file=names_file(tmp_path, "x"))


def test_sync_off_loopback_is_refused_while_real_calls_are_off() -> None:
    with pytest.raises(RealCallBlocked):
        sync_pypi(RegistryStore(), "https://pypi.org")


def test_a_new_sync_replaces_the_old_index(tmp_path: Path) -> None:
    store = RegistryStore()
    sync(store, "npm", from_file=names_file(tmp_path, "old-name", "kept"), now=lambda: 100.0)
    index = sync(store, "npm", from_file=names_file(tmp_path, "kept"), now=lambda: 200.0)
    assert index == SyncedIndex("npm", 1, 200.0, str((tmp_path / "names.txt").resolve()), True)
    client = OfflineRegistryClient(store)
    assert client.exists("npm", "kept") is True
    assert client.exists("npm", "old-name") is False


# --------------------------------------------------------------------------------------- offline client


def test_offline_client_verdicts(tmp_path: Path) -> None:
    store = RegistryStore()
    sync(store, "pypi", from_file=names_file(tmp_path, "Requests", "real-pkg"))
    sync(store, "crates", from_file=names_file(tmp_path, "serde"), partial=True)
    store.remember("npm", "cached-pkg", True, 1000.0)
    client = OfflineRegistryClient(store, [frozenset({("npm", "locked-pkg")})],
                                   online_note="hallucination.online = false", clock=lambda: 1100.0)

    assert client.exists("pypi", "real_pkg") is True  # synced, compared normalised
    assert client.exists("pypi", "made-up-pkg") is False  # missing from a complete index
    assert "not among the 2 names of the pypi index synced" in client.describe("pypi", "made-up-pkg")
    assert client.exists("crates", "serde") is True
    assert client.exists("crates", "not-in-partial") is None  # a partial list proves nothing by omission
    assert client.exists("npm", "locked-pkg") is True  # a name the operator chose
    assert client.exists("npm", "cached-pkg") is True  # an earlier online answer, still fresh
    assert client.exists("npm", "never-heard-of") is None  # no npm index at all
    why = client.describe("npm", "never-heard-of")
    assert "no npm index is synced" in why and "hallucination.online = false" in why
    stale = OfflineRegistryClient(store, clock=lambda: 1000.0 + 8 * 86400)
    assert stale.exists("npm", "cached-pkg") is None


def test_installed_distributions_are_known_unless_inside_the_worktree(tmp_path: Path) -> None:
    mine = installed_names(None, tmp_path)
    assert ("pypi", "pydantic") in mine  # from onloop's own venv
    other = installed_names(sys.executable, tmp_path)  # the same venv, asked in one child process
    assert ("pypi", "pydantic") in other
    assert installed_distributions.cache_info().currsize >= 2
    # A venv inside the worktree was filled by the agent: what is in it proves nothing.
    inside = installed_names(sys.executable, Path(sys.prefix))
    assert ("pypi", "pydantic") not in inside
    with pytest.raises(ConfigError, match=r"hallucination\.python"):
        installed_distributions(str(tmp_path / "no-such-python"))


# --------------------------------------------------------------------------- the check, on real repos


BASE_FILES = {
    "requirements.txt": "requests\n",
    "poetry.lock": '[[package]]\nname = "Locked-Only"\nversion = "1.0"\n',
    "package.json": '{"dependencies": {}}\n',
    "app.py": "import requests\nimport legacy_gone_module\n",
}


def test_check_iteration_verifies_offline(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo(BASE_FILES)
    base = git(repo, "rev-parse", "HEAD").strip()
    sync(RegistryStore(), "pypi", from_file=names_file(tmp_path, "requests", "real-pkg"))
    commit(repo, {
        "requirements.txt": "requests\nreal-pkg\nlocked_only\npydantic\nmade-up-pkg\n",
        "package.json": '{"dependencies": {"unknown-npm-thing": "1"}}\n',
        "app.py": "import requests\nimport legacy_gone_module\nimport totally_made_up_mod\n",
    }, "iteration 1")

    paths = changed(repo, base)
    findings = check_iteration(repo, base, paths, paths, "", HallucinationConfig(), network="none")

    assert subjects(findings) == {
        ("hallucination", "dependency", "made-up-pkg"),
        ("could_not_verify", "dependency", "unknown-npm-thing"),
        ("hallucination", "import", "totally_made_up_mod"),  # legacy_gone_module was there at base
    }
    made_up = next(f for f in findings if f.subject == "made-up-pkg")
    assert made_up.evidence.startswith("requirements.txt adds 'made-up-pkg', which is not among the 2 names")


def test_no_request_leaves_the_host_with_network_none(make_repo: MakeRepo, registry: FakeRegistry) -> None:
    repo = make_repo({"requirements.txt": "requests\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    commit(repo, {"requirements.txt": "requests\nreal-but-unsynced\nagent-chosen-secret-data\n"}, "iteration 1")
    paths = changed(repo, base)
    online = HallucinationConfig(online=True, registries={"pypi": registry.url})

    findings = check_iteration(repo, base, paths, paths, "", online, network="none")

    assert registry.requests == []  # not one lookup: the names never left the host
    assert subjects(findings) == {("could_not_verify", "dependency", "real-but-unsynced"),
                                  ("could_not_verify", "dependency", "agent-chosen-secret-data")}
    assert all('policy.network = "none"' in f.evidence for f in findings)
    # Online lookups off (the default) with a full network: still nothing sent.
    check_iteration(repo, base, paths, paths, "", HallucinationConfig(registries={"pypi": registry.url}),
                    network="full")
    assert registry.requests == []


def test_online_lookups_when_allowed(make_repo: MakeRepo, registry: FakeRegistry) -> None:
    repo = make_repo({"requirements.txt": "requests\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    commit(repo, {"requirements.txt": "requests\nreal-but-unsynced\nmade-up-online\npydantic\n"}, "iteration 1")
    paths = changed(repo, base)
    online = HallucinationConfig(online=True, registries={"pypi": registry.url})

    findings = check_iteration(repo, base, paths, paths, "", online, network="full")

    assert subjects(findings) == {("hallucination", "dependency", "made-up-online")}
    asked = sorted(path for path, _ in registry.requests)
    assert asked == ["/pypi/made-up-online/json", "/pypi/real-but-unsynced/json"]  # pydantic: installed
    # The answers are cached: the next iteration asks nobody.
    check_iteration(repo, base, paths, paths, "", online, network="full")
    assert len(registry.requests) == 2


def test_a_removed_name_stops_being_reported(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo({"requirements.txt": "requests\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    sync(RegistryStore(), "pypi", from_file=names_file(tmp_path, "requests"))
    commit(repo, {"requirements.txt": "requests\nmade-up-pkg\n"}, "iteration 1")
    first = check_iteration(repo, base, changed(repo, base), ["requirements.txt"], "", HallucinationConfig(),
                            network="none")
    assert subjects(first) == {("hallucination", "dependency", "made-up-pkg")}

    commit(repo, {"requirements.txt": "requests\n"}, "iteration 2")
    assert changed(repo, base) == []
    assert check_iteration(repo, base, changed(repo, base), ["requirements.txt"], "", HallucinationConfig(),
                           network="none") == []


def test_branch_wide_check_reports_what_an_earlier_iteration_added(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo({"requirements.txt": "requests\n", "README.md": "hello\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    sync(RegistryStore(), "pypi", from_file=names_file(tmp_path, "requests"))
    commit(repo, {"requirements.txt": "requests\nmade-up-pkg\n", "tool.py": "import fancy_made_up_lib\n"},
           "iteration 1")
    previous = commit(repo, {"README.md": "hello again\n"}, "iteration 2")
    this_iteration = changed(repo, f"{previous}~1", previous)
    assert this_iteration == ["README.md"]

    message = "Updated README.md and changed requirements.txt."
    findings = check_iteration(repo, base, changed(repo, base), this_iteration, message, HallucinationConfig(),
                               network="none")

    assert subjects(findings) == {
        ("hallucination", "dependency", "made-up-pkg"),
        ("hallucination", "import", "fancy_made_up_lib"),
        ("hallucination", "claimed_path", "requirements.txt"),  # claims are about this iteration only
    }


def test_a_manifest_symlinked_out_of_the_worktree_is_not_read(make_repo: MakeRepo, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("hunter2-password\n")
    repo = make_repo({"requirements.txt": "requests\n"})
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "requirements.txt").unlink()
    (repo / "requirements.txt").symlink_to(secret)
    (repo / "sub").mkdir()
    (repo / "sub" / "requirements.txt").symlink_to(repo / "nowhere.txt")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "iteration 1")

    findings = check_iteration(repo, base, changed(repo, base), [], "", HallucinationConfig(), network="none")

    assert findings == []  # the host file's lines never become findings (nor feedback to the agent)


def test_base_commit_is_read_once(make_repo: MakeRepo) -> None:
    repo = make_repo(BASE_FILES)
    base = git(repo, "rev-parse", "HEAD").strip()
    snapshot = base_snapshot(repo, base)
    assert base_snapshot(repo, base) is snapshot
    assert ("pypi", "locked-only") in snapshot.known and ("pypi", "requests") in snapshot.known
    assert snapshot.texts(["requirements.txt", "not-at-base.txt"]) == {"requirements.txt": "requests\n",
                                                                       "not-at-base.txt": None}


def test_check_dependencies_uses_the_offline_evidence(tmp_path: Path) -> None:
    store = RegistryStore()
    client = OfflineRegistryClient(store, online_note="hallucination.online = false")
    findings = check_dependencies([("Cargo.toml", "", '[dependencies]\nserde = "1"\n')], client)
    assert [(f.kind, f.subject) for f in findings] == [("could_not_verify", "serde")]
    assert "no crates index is synced (`onloop registry sync crates`)" in findings[0].evidence
