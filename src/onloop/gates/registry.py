"""Offline package-name data for the dependency check, so no agent-chosen name has to leave the host.

Why offline: looking a name up in a registry sends that name off the machine. When the agent chose the
name (it wrote it into a manifest), the lookup is a channel out of the sandbox, whatever
`policy.network` says. So the check answers from data already on this machine, in this order:

1. names the operator chose: the base commit's lock files and manifests, and the distributions
   installed in the project's environment (the caller passes these sets in; see `installed_names`);
2. the package index the operator downloaded with `onloop registry sync` (`sync_pypi`, `sync_file`);
3. earlier online answers (`CachedRegistryClient`), while they are fresh.

A name none of them knows is "could not verify". A name missing from a synced index that is the whole
registry is made up. Only when the operator allows it (`hallucination.online`, and a policy network
other than "none") does `OfflineFirstClient` ask the registry over the network for what is left.

One SQLite file, `ONLOOP_HOME/cache/registry.sqlite`, built by ordered, named migrations:

- `registry_names`: one row per (ecosystem, normalised name) of a synced index, with when it was synced;
- `registry_syncs`: per ecosystem, when, from where, how many names, and whether it is the whole registry;
- `registry_cache`: answers of online lookups, with when they were given.

A sync replaces an ecosystem's names in one transaction, so a crash mid-sync leaves the previous index.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from onloop.errors import ConfigError, NotFoundError, OperatorError, UsageError
from onloop.gates.hallucination import ECOSYSTEMS, Ecosystem, Exists, NameKey, RegistryClient, normalise_name
from onloop.safety import RealCallBlocked, is_loopback_url, real_calls_allowed

DEFAULT_PYPI_URL = "https://pypi.org"
PYPI_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
TTL_FOUND = 7 * 86400.0  # a package that exists rarely disappears; a week
TTL_MISSING = 3600.0  # a name missing today may be published, by its author or a squatter, tomorrow
Now = Callable[[], float]

Migration = Callable[[sqlite3.Connection], None]
_MIGRATIONS: list[tuple[str, Migration]] = []
_MIGRATED: set[Path] = set()
_MIGRATE_LOCK = threading.Lock()


def registry_path() -> Path:
    from onloop.store.db import onloop_home

    return onloop_home() / "cache" / "registry.sqlite"


# ------------------------------------------------------------------------------------------ storage


def _migration(name: str) -> Callable[[Migration], Migration]:
    def decorate(fn: Migration) -> Migration:
        _MIGRATIONS.append((name, fn))
        return fn

    return decorate


@_migration("registry_cache")
def _cache_table(db: sqlite3.Connection) -> None:
    # IF NOT EXISTS: caches written before migrations existed already have this table.
    db.execute("CREATE TABLE IF NOT EXISTS registry_cache (ecosystem TEXT, name TEXT, found INTEGER, "
               "checked_at REAL, PRIMARY KEY (ecosystem, name))")


@_migration("registry_names")
def _names_table(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE registry_names (ecosystem TEXT NOT NULL, name TEXT NOT NULL, synced_at REAL NOT NULL, "
               "PRIMARY KEY (ecosystem, name)) WITHOUT ROWID")


@_migration("registry_syncs")
def _syncs_table(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE registry_syncs (ecosystem TEXT PRIMARY KEY, names INTEGER NOT NULL, "
               "synced_at REAL NOT NULL, source TEXT NOT NULL, complete INTEGER NOT NULL)")


def _migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    for name, fn in _MIGRATIONS:
        if name not in done:
            with db:
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection with the schema in place (migrated once per file per process); closed afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path not in _MIGRATED or not path.exists()  # a deleted file is made again, schema and all
    with closing(sqlite3.connect(path, timeout=10)) as db:
        if fresh:
            with _MIGRATE_LOCK:
                db.execute("PRAGMA journal_mode=WAL")  # status and checks read while a sync writes
                _migrate(db)
                _MIGRATED.add(path)
        yield db


@dataclass(frozen=True, slots=True)
class SyncedIndex:
    """What `onloop registry status` shows for one ecosystem."""

    ecosystem: Ecosystem
    names: int
    synced_at: float  # seconds since the epoch
    source: str  # the URL or the file the names came from
    complete: bool  # the whole registry: a name missing from it does not exist

    @property
    def synced_at_iso(self) -> str:
        return datetime.fromtimestamp(self.synced_at, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class _Row:
    """Everything the store knows about one name, from one query."""

    complete: bool | None  # None: no index synced for the ecosystem
    listed: bool
    found: bool | None  # an earlier online answer, if any
    checked_at: float | None


class RegistryStore:
    """The registry file: synced indexes and cached answers."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or registry_path()

    def replace(self, index: SyncedIndex, names: Iterable[str]) -> SyncedIndex:
        """Make `names` the ecosystem's index, atomically; returns the index with its real name count."""
        keys = {normalise_name(index.ecosystem, n) for n in names} - {""}
        if not keys:
            raise OperatorError(f"{index.source} lists no {index.ecosystem} names: nothing synced")
        stored = SyncedIndex(index.ecosystem, len(keys), index.synced_at, index.source, index.complete)
        with connect(self.path) as db, db:
            db.execute("DELETE FROM registry_names WHERE ecosystem = ?", (index.ecosystem,))
            db.executemany("INSERT INTO registry_names VALUES (?, ?, ?)",
                           ((index.ecosystem, key, index.synced_at) for key in keys))
            db.execute("INSERT OR REPLACE INTO registry_syncs VALUES (?, ?, ?, ?, ?)",
                       (stored.ecosystem, stored.names, stored.synced_at, stored.source, int(stored.complete)))
        return stored

    def indexes(self) -> dict[Ecosystem, SyncedIndex]:
        with connect(self.path) as db:
            rows = db.execute("SELECT ecosystem, names, synced_at, source, complete FROM registry_syncs").fetchall()
        return {row[0]: SyncedIndex(row[0], int(row[1]), float(row[2]), row[3], bool(row[4]))
                for row in rows if row[0] in ECOSYSTEMS}

    def lookup(self, ecosystem: Ecosystem, key: str) -> _Row:
        with connect(self.path) as db:
            row = db.execute(
                "SELECT (SELECT complete FROM registry_syncs WHERE ecosystem = :e), "
                "EXISTS (SELECT 1 FROM registry_names WHERE ecosystem = :e AND name = :n), c.found, c.checked_at "
                "FROM (SELECT 1) LEFT JOIN registry_cache c ON c.ecosystem = :e AND c.name = :n",
                {"e": ecosystem, "n": key}).fetchone()
        complete, listed, found, checked_at = row
        return _Row(None if complete is None else bool(complete), bool(listed),
                    None if found is None else bool(found), None if checked_at is None else float(checked_at))

    def remember(self, ecosystem: Ecosystem, key: str, found: bool, at: float) -> None:
        with connect(self.path) as db, db:
            db.execute("INSERT OR REPLACE INTO registry_cache VALUES (?, ?, ?, ?)", (ecosystem, key, int(found), at))


def _fresh(found: bool, checked_at: float, now: float, ttl_found: float, ttl_missing: float) -> bool:
    return now - checked_at < (ttl_found if found else ttl_missing)


# ---------------------------------------------------------------------------------------------- sync


def sync_pypi(store: RegistryStore, url: str = DEFAULT_PYPI_URL, *, now: Now = time.time,
              timeout: float = 300.0) -> SyncedIndex:
    """Download PyPI's project list (the PEP 691 JSON simple index) and make it the pypi index."""
    simple = url.rstrip("/") if url.rstrip("/").endswith("/simple") else url.rstrip("/") + "/simple"
    simple += "/"
    if not real_calls_allowed() and not is_loopback_url(simple):
        raise RealCallBlocked(f"real calls are switched off: not downloading {simple} (use a loopback --url)")
    names = _project_names(_download(simple, timeout), simple)
    return store.replace(SyncedIndex("pypi", 0, now(), simple, True), names)


def _download(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={
        "Accept": PYPI_SIMPLE_JSON, "User-Agent": "onloop-registry-sync (https://github.com/onloop)"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            if kind != PYPI_SIMPLE_JSON and not kind.endswith("json"):
                raise OperatorError(f"{url} answered {kind}, not the JSON simple index ({PYPI_SIMPLE_JSON})")
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise OperatorError(f"could not download the index from {url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise OperatorError(f"could not download the index from {url}: {exc} (check --url and the network)") from exc


def _project_names(body: bytes, url: str) -> list[str]:
    try:
        projects = json.loads(body)["projects"]
        return [p["name"] for p in projects if isinstance(p.get("name"), str)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        expected = '{"projects": [{"name": ...}, ...]}'
        raise OperatorError(f"{url} is not a JSON simple index (expected {expected})") from exc


def sync_file(store: RegistryStore, ecosystem: Ecosystem, path: Path, *, complete: bool = True,
              now: Now = time.time) -> SyncedIndex:
    """Import a names list (one per line, `#` comments) as the ecosystem's index.

    `complete=False` says the list is not the whole registry: its names are verified, but a name
    missing from it is only "could not verify", never made up.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise NotFoundError(f"names list not found: {path}") from None
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return store.replace(SyncedIndex(ecosystem, 0, now(), str(path.resolve()), complete), names)


def ecosystem_named(name: str) -> Ecosystem:
    for ecosystem in ECOSYSTEMS:
        if ecosystem == name:
            return ecosystem
    raise UsageError(f"unknown ecosystem {name!r} (allowed: {', '.join(ECOSYSTEMS)})")


def sync(store: RegistryStore, ecosystem: str, *, url: str | None = None, from_file: Path | None = None,
         partial: bool = False, now: Now = time.time) -> SyncedIndex:
    """What `onloop registry sync` does: check the arguments, then download or import."""
    eco = ecosystem_named(ecosystem)
    if url is not None and from_file is not None:
        raise UsageError("give either --url (download) or --from (a names list), not both")
    if from_file is not None:
        return sync_file(store, eco, from_file, complete=not partial, now=now)
    if eco != "pypi":
        raise UsageError(f"{eco} has no practical full name list online: import one with --from FILE")
    if partial:
        raise UsageError("--partial is for a names list (--from); the PyPI index is the whole registry")
    return sync_pypi(store, url or DEFAULT_PYPI_URL, now=now)


# ---------------------------------------------------------------------------------------- installed

_LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json, sys\n"
    "out = []\n"
    "for d in m.distributions():\n"
    "    try:\n"
    "        out.append([d.metadata['Name'] or '', str(d.locate_file(''))])\n"
    "    except Exception:\n"
    "        pass\n"
    "json.dump(out, sys.stdout)\n"
)


@lru_cache(maxsize=8)
def installed_distributions(python: str | None = None) -> tuple[tuple[str, str], ...]:
    """(name, location) of every distribution `python` sees (default: this interpreter), read once."""
    if python is None:
        from importlib.metadata import distributions

        return tuple((d.metadata["Name"] or "", str(d.locate_file(""))) for d in distributions())
    try:
        done = subprocess.run([python, "-c", _LIST_DISTRIBUTIONS], capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, PermissionError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot list the distributions of {python}: {exc}", key="hallucination.python") from exc
    if done.returncode != 0:
        raise ConfigError(f"{python} could not list its distributions: {done.stderr.strip()[-300:]}",
                          key="hallucination.python")
    return tuple((str(name), str(where)) for name, where in json.loads(done.stdout))


@lru_cache(maxsize=32)
def installed_names(python: str | None, outside: Path) -> frozenset[NameKey]:
    """The installed distributions' names, except those installed inside `outside` (the worktree).

    A virtualenv inside the worktree was filled by the agent or its gates, so what is in it proves
    nothing: a name counts only when the operator's environment, outside the agent's reach, has it.
    """
    root = outside.resolve()
    names: set[NameKey] = set()
    for name, where in installed_distributions(python):
        if name and not Path(where).resolve().is_relative_to(root):
            names.add(("pypi", normalise_name("pypi", name)))
    return frozenset(names)


# ------------------------------------------------------------------------------------------ clients


class CachedRegistryClient:
    """The SQLite cache in front of an online client: answers survive restarts and work offline.

    A package that exists is cached for `ttl_found` (a week); one that does not for `ttl_missing` (an
    hour: a name that is missing today may be published, by its author or by a squatter, tomorrow).
    "Could not verify" is never cached.
    """

    def __init__(self, inner: RegistryClient, path: Path | None = None, *, ttl_found: float = TTL_FOUND,
                 ttl_missing: float = TTL_MISSING, clock: Now = time.time) -> None:
        self.store = RegistryStore(path)
        self.path = self.store.path
        self.inner, self.clock = inner, clock
        self.ttl_found, self.ttl_missing = ttl_found, ttl_missing

    def exists(self, ecosystem: Ecosystem, name: str) -> Exists:
        key = normalise_name(ecosystem, name)
        row = self.store.lookup(ecosystem, key)
        if row.found is not None and row.checked_at is not None and _fresh(
                row.found, row.checked_at, self.clock(), self.ttl_found, self.ttl_missing):
            return row.found
        found = self.inner.exists(ecosystem, name)
        if found is not None:
            self.store.remember(ecosystem, key, found, self.clock())
        return found


class OfflineRegistryClient:
    """Answers from data on this machine only: nothing it is asked leaves the host.

    `known` are sets of names the operator chose (the base commit's lock files and manifests, the
    installed environment); they are checked in memory. Everything else costs one SQLite query: the
    synced index and the cached online answers together. `online_note` says, for the evidence of a
    "could not verify", why the registry was not asked.
    """

    def __init__(self, store: RegistryStore, known: Sequence[Collection[NameKey]] = (), *, online_note: str = "",
                 ttl_found: float = TTL_FOUND, ttl_missing: float = TTL_MISSING, clock: Now = time.time) -> None:
        self.store, self.known, self.online_note, self.clock = store, known, online_note, clock
        self.ttl_found, self.ttl_missing = ttl_found, ttl_missing
        self._why: dict[NameKey, str] = {}

    def exists(self, ecosystem: Ecosystem, name: str) -> Exists:
        key: NameKey = (ecosystem, normalise_name(ecosystem, name))
        if any(key in names for names in self.known):
            return True
        row = self.store.lookup(*key)
        if row.listed:
            return True
        if row.found is not None and row.checked_at is not None and _fresh(
                row.found, row.checked_at, self.clock(), self.ttl_found, self.ttl_missing):
            self._why[key] = "cached"
            return row.found
        self._why[key] = "unlisted" if row.complete else "unknown"
        return False if row.complete else None

    def describe(self, ecosystem: Ecosystem, name: str) -> str:
        why = self._why.get((ecosystem, normalise_name(ecosystem, name)), "unknown")
        if why == "cached":
            # The same words as the online answer it remembers, so a finding reads the same every iteration.
            return f"which {ecosystem} does not know"
        index = self.store.indexes().get(ecosystem)
        if why == "unlisted" and index is not None:
            return (f"which is not among the {index.names} names of the {ecosystem} index synced "
                    f"{index.synced_at_iso} from {index.source} (if it was published since, run "
                    f"`onloop registry sync {ecosystem}` again)")
        synced = (f"the {ecosystem} list synced {index.synced_at_iso} is partial" if index else
                  f"no {ecosystem} index is synced (`onloop registry sync {ecosystem}`)")
        off = f"; online lookups are off ({self.online_note})" if self.online_note else ""
        return (f"and no offline data knows it: {synced}, and it is in neither the base commit's lock files "
                f"and manifests nor the installed environment{off}")


class OfflineFirstClient:
    """Offline data first; the online client only for names offline data cannot vouch for either way.

    Used only when the operator allows online lookups: each name it passes on leaves the host.
    """

    def __init__(self, offline: OfflineRegistryClient, online: RegistryClient) -> None:
        self.offline, self.online = offline, online
        self._asked: dict[NameKey, Exists] = {}

    def exists(self, ecosystem: Ecosystem, name: str) -> Exists:
        found = self.offline.exists(ecosystem, name)
        if found is not None:
            return found
        answer = self.online.exists(ecosystem, name)
        self._asked[(ecosystem, normalise_name(ecosystem, name))] = answer
        return answer

    def describe(self, ecosystem: Ecosystem, name: str) -> str:
        key: NameKey = (ecosystem, normalise_name(ecosystem, name))
        if key not in self._asked:
            return self.offline.describe(ecosystem, name)
        if self._asked[key] is False:
            return f"which {ecosystem} does not know"
        return f"and no offline data knows it, and {ecosystem} could not be reached"
