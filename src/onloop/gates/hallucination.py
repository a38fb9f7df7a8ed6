"""Checks for things an agent made up: packages, modules and edits that do not exist.

Three pure checks over inputs the loop already has (manifest contents before and after, the changed
files, the agent's final message), so the lead can run them after every iteration:

(a) `check_dependencies`: names added to a manifest (`pyproject.toml` dependencies and optional
    dependencies, `requirements*.txt`, `package.json` dependencies/devDependencies/peer/optional,
    `Cargo.toml` [dependencies]/[dev-dependencies]/[build-dependencies]) are looked up in their
    registry through a `RegistryClient`. A name the registry does not know is a hallucination (and an
    invitation to slopsquatting: someone may register it later). An unreachable registry gives a
    `could_not_verify` finding, never a silent pass. Path, git and workspace dependencies are skipped.
(b) `check_imports`: top-level modules imported by changed Python files that are not in the standard
    library, not in the repository tree, not importable in the given environment and not a declared
    dependency. Imports inside `try: ... except ImportError` are optional by construction and skipped.
(c) `check_claimed_paths`: file paths the final message says were changed (a line with a change verb,
    or a list under a heading like "Files changed:") that are not among the changed files.

Every hit is a frozen `Finding`; `kind` is "hallucination" for a hit and "could_not_verify" when the
truth could not be established. The lead records hallucinations as incidents.
"""

from __future__ import annotations

import ast
import json
import re
import sqlite3
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

Ecosystem = Literal["pypi", "npm", "crates"]
Exists = bool | None  # None: could not verify (registry unreachable, unexpected answer)

DEFAULT_BASE_URLS: Mapping[str, str] = {
    "pypi": "https://pypi.org", "npm": "https://registry.npmjs.org", "crates": "https://crates.io",
}
_CHANGE_VERBS = re.compile(
    r"\b(chang|modif|updat|edit|add|creat|wr[io]t|fix|implement|refactor|remov|delet|renam|mov|touch|rewr)\w*",
    re.IGNORECASE,
)
_PATH_TOKEN = re.compile(r"`([^`\s]+)`|(?<![\w/.@-])((?:[\w.-]+/)*[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,7})(?![\w/-])")
_PEP508_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Literal["hallucination", "could_not_verify"]
    category: Literal["dependency", "import", "claimed_path"]
    subject: str  # the package, module or path
    evidence: str  # one sentence a human can check


@dataclass(frozen=True, slots=True)
class Dependency:
    ecosystem: Ecosystem
    name: str
    manifest: str


class RegistryClient(Protocol):
    def exists(self, ecosystem: Ecosystem, name: str) -> Exists:
        """True/False when the registry answered; None when it could not be asked."""
        ...


# ---------------------------------------------------------------------------------------------- (a)


def normalise_name(ecosystem: Ecosystem, name: str) -> str:
    if ecosystem == "pypi":
        return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503
    return name.strip()


def manifest_dependencies(path: str, content: str | None) -> set[Dependency]:
    """The registry dependencies a manifest declares; unknown manifests and parse errors give none."""
    if not content:
        return set()
    name = Path(path).name
    try:
        if name == "pyproject.toml":
            return {Dependency("pypi", n, path) for n in _pyproject(tomllib.loads(content))}
        if name.startswith("requirements") and name.endswith(".txt"):
            return {Dependency("pypi", n, path) for n in _requirements(content)}
        if name == "package.json":
            return {Dependency("npm", n, path) for n in _package_json(json.loads(content))}
        if name == "Cargo.toml":
            return {Dependency("crates", n, path) for n in _cargo(tomllib.loads(content))}
    except (tomllib.TOMLDecodeError, ValueError):
        return set()
    return set()


def added_dependencies(path: str, before: str | None, after: str | None) -> list[Dependency]:
    old = {(d.ecosystem, normalise_name(d.ecosystem, d.name)) for d in manifest_dependencies(path, before)}
    new = manifest_dependencies(path, after)
    return sorted((d for d in new if (d.ecosystem, normalise_name(d.ecosystem, d.name)) not in old),
                  key=lambda d: d.name)


def _pep508_names(specs: Iterable[Any]) -> set[str]:
    names = set()
    for spec in specs:
        if not isinstance(spec, str) or " @ " in spec:  # a direct URL is not a registry package
            continue
        match = _PEP508_NAME.match(spec)
        if match:
            names.add(match.group(1))
    return names


def _pyproject(data: dict[str, Any]) -> set[str]:
    project = data.get("project", {})
    specs = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        specs.extend(group)
    for group in data.get("dependency-groups", {}).values():
        specs.extend(s for s in group if isinstance(s, str))
    return _pep508_names(specs)


def _requirements(content: str) -> set[str]:
    lines = []
    for raw in content.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", "git+", "http:", "https:", "file:", ".", "/")):
            continue  # options (-r, -e, --index-url), URLs and local paths are not registry names
        lines.append(line)
    return _pep508_names(lines)


def _package_json(data: Any) -> set[str]:
    names = set()
    local = ("file:", "link:", "workspace:", "git", "github:", "http:", "https:", "portal:")
    for key in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        for name, version in (data.get(key) or {}).items() if isinstance(data, dict) else []:
            if isinstance(version, str) and version.startswith(local):
                continue
            if isinstance(version, str) and version.startswith("npm:"):
                name = version[4:].rsplit("@", 1)[0] or name  # an alias installs the real package
            names.add(name)
    return names


def _cargo(data: dict[str, Any]) -> set[str]:
    tables = [data.get(k, {}) for k in ("dependencies", "dev-dependencies", "build-dependencies")]
    tables.append(data.get("workspace", {}).get("dependencies", {}))
    for target in data.get("target", {}).values():
        tables.extend(target.get(k, {}) for k in ("dependencies", "dev-dependencies", "build-dependencies"))
    names: set[str] = set()
    for table in tables:
        for name, spec in table.items():
            if isinstance(spec, dict):
                if spec.get("path") or spec.get("git") or spec.get("workspace"):
                    continue
                name = spec.get("package", name)  # a renamed dependency is published under `package`
            names.add(name)
    return names


def check_dependencies(changes: Iterable[tuple[str, str | None, str | None]], client: RegistryClient) -> list[Finding]:
    """`changes` are (manifest path, content before, content after)."""
    findings = []
    for path, before, after in changes:
        for dep in added_dependencies(path, before, after):
            found = client.exists(dep.ecosystem, dep.name)
            if found is False:
                findings.append(Finding("hallucination", "dependency", dep.name,
                                        f"{dep.manifest} adds {dep.name!r}, which {dep.ecosystem} does not know"))
            elif found is None:
                findings.append(Finding("could_not_verify", "dependency", dep.name,
                                        f"{dep.manifest} adds {dep.name!r}; {dep.ecosystem} could not be reached"))
    return findings


class HttpRegistryClient:
    """Asks PyPI (`/pypi/<name>/json`), npm (`/<name>`) and crates.io (`/api/v1/crates/<name>`).

    200 means the package exists, 404 that it does not; anything else (timeouts, 5xx, 429, no network)
    is "could not verify". Base URLs are configurable so tests use a fake index on 127.0.0.1.
    """

    def __init__(self, base_urls: Mapping[str, str] | None = None, *, timeout: float = 5.0) -> None:
        self.base_urls = {**DEFAULT_BASE_URLS, **(base_urls or {})}
        self.timeout = timeout

    def url(self, ecosystem: Ecosystem, name: str) -> str:
        base = self.base_urls[ecosystem].rstrip("/")
        # PyPI answers the PEP 503 normalised name directly (others through a redirect).
        quoted = urllib.parse.quote(normalise_name(ecosystem, name), safe="@")
        if ecosystem == "pypi":
            return f"{base}/pypi/{quoted}/json"
        if ecosystem == "npm":
            return f"{base}/{quoted}"  # a scoped name's slash is encoded: /@scope%2fname
        return f"{base}/api/v1/crates/{quoted}"

    def exists(self, ecosystem: Ecosystem, name: str) -> Exists:
        # crates.io refuses requests without a User-Agent that names the client.
        request = urllib.request.Request(self.url(ecosystem, name), headers={
            "User-Agent": "onloop-hallucination-check (https://github.com/onloop)", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            return False if exc.code in (404, 410) else None
        except (urllib.error.URLError, TimeoutError, OSError):
            return None


class CachedRegistryClient:
    """A SQLite cache in front of a client: answers survive restarts and work offline.

    A package that exists is cached for `ttl_found` (a week); one that does not for `ttl_missing` (an
    hour: a name that is missing today may be published, by its author or by a squatter, tomorrow).
    "Could not verify" is never cached.
    """

    def __init__(self, inner: RegistryClient, path: Path | None = None, *, ttl_found: float = 7 * 86400,
                 ttl_missing: float = 3600, clock: Callable[[], float] = time.time) -> None:
        if path is None:
            from onloop.store.db import onloop_home

            path = onloop_home() / "cache" / "registry.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.inner, self.path, self.clock = inner, path, clock
        self.ttl_found, self.ttl_missing = ttl_found, ttl_missing
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS registry_cache (ecosystem TEXT, name TEXT, found INTEGER, "
                       "checked_at REAL, PRIMARY KEY (ecosystem, name))")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def exists(self, ecosystem: Ecosystem, name: str) -> Exists:
        key = normalise_name(ecosystem, name)
        with self._connect() as db:
            row = db.execute("SELECT found, checked_at FROM registry_cache WHERE ecosystem=? AND name=?",
                             (ecosystem, key)).fetchone()
        if row is not None:
            ttl = self.ttl_found if row[0] else self.ttl_missing
            if self.clock() - float(row[1]) < ttl:
                return bool(row[0])
        found = self.inner.exists(ecosystem, name)
        if found is not None:
            with self._connect() as db:
                db.execute("INSERT OR REPLACE INTO registry_cache VALUES (?, ?, ?, ?)",
                           (ecosystem, key, int(found), self.clock()))
        return found


# ---------------------------------------------------------------------------------------------- (b)

# Distributions whose import name is not their normalised project name (the common cases).
_IMPORT_ALIASES = {
    "yaml": "pyyaml", "bs4": "beautifulsoup4", "PIL": "pillow", "sklearn": "scikit-learn",
    "dateutil": "python-dateutil", "cv2": "opencv-python", "jwt": "pyjwt", "attr": "attrs",
    "google": "protobuf", "dotenv": "python-dotenv", "magic": "python-magic", "serial": "pyserial",
    "Crypto": "pycryptodome", "OpenSSL": "pyopenssl", "git": "gitpython", "zmq": "pyzmq",
}


def imported_modules(source: str) -> set[str]:
    """Top-level names of absolute imports, outside `try/except ImportError` blocks."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    optional: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            optional.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return handler.type is None or any(
        isinstance(k, ast.Name) and k.id in ("ImportError", "ModuleNotFoundError", "Exception") for k in kinds)


def repo_module_names(root: Path, *, max_files: int = 50_000) -> set[str]:
    """Every name the repository could provide as a top-level module: any `x.py` or directory `x`."""
    skip = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache", "target"}
    names: set[str] = set()
    stack = [root]
    seen = 0
    while stack and seen < max_files:
        for entry in stack.pop().iterdir():
            seen += 1
            if entry.is_dir():
                if entry.name not in skip:
                    names.add(entry.name)
                    stack.append(entry)
            elif entry.suffix in (".py", ".pyi", ".so", ".pyd"):
                names.add(entry.name.split(".")[0])
    return names


def check_imports(changed_sources: Mapping[str, str], *, repo_root: Path, declared: Iterable[str] = (),
                  installed: Callable[[str], bool] | None = None) -> list[Finding]:
    """Modules imported by changed Python files that exist nowhere.

    `installed(name)` says whether the module can be found in the gate's environment; the default asks
    `importlib.util.find_spec` in this interpreter (pass `find_spec_in(python)` for another venv).
    """
    declared_names = {normalise_name("pypi", d) for d in declared}
    is_installed = installed or _find_spec_here
    local = repo_module_names(repo_root)
    findings = []
    for path in sorted(changed_sources):
        if not path.endswith(".py"):
            continue
        for module in sorted(imported_modules(changed_sources[path])):
            if module in sys.stdlib_module_names or module in local or module == "__future__":
                continue
            dist = normalise_name("pypi", _IMPORT_ALIASES.get(module, module))
            if dist in declared_names or normalise_name("pypi", module) in declared_names:
                continue
            if is_installed(module):
                continue
            findings.append(Finding("hallucination", "import", module,
                                    f"{path} imports {module!r}: not stdlib, not in the repository, "
                                    "not installed, not a declared dependency"))
    return findings


def _find_spec_here(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def find_spec_in(python: str, *, timeout: float = 30.0) -> Callable[[str], bool]:
    """An `installed` predicate for another interpreter (the workspace's venv), asked once per name."""
    import subprocess

    cache: dict[str, bool] = {}

    def installed(module: str) -> bool:
        if module not in cache:
            code = "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 1)"
            result = subprocess.run([python, "-c", code, module], capture_output=True, timeout=timeout)
            cache[module] = result.returncode == 0
        return cache[module]

    return installed


# ---------------------------------------------------------------------------------------------- (c)


def claimed_paths(message: str) -> list[str]:
    """Paths the message says were changed: on a line with a change verb, or listed under one."""
    claims: list[str] = []
    in_list = False
    for line in message.splitlines():
        stripped = line.strip()
        if not stripped:
            in_list = False
            continue
        is_heading = stripped.endswith(":") and bool(_CHANGE_VERBS.search(stripped))
        if is_heading:
            in_list = True
        if not (is_heading or in_list or _CHANGE_VERBS.search(stripped)):
            continue
        for match in _PATH_TOKEN.finditer(stripped):
            token = (match.group(1) or match.group(2) or "").strip(".,;:()'\"")
            if _looks_like_path(token) and token not in claims:
                claims.append(token)
    return claims


_FILE_EXTENSIONS = frozenset((
    "py", "pyi", "pyx", "js", "jsx", "ts", "tsx", "mjs", "cjs", "json", "jsonc", "toml", "yaml", "yml", "md",
    "rst", "txt", "cfg", "ini", "rs", "go", "java", "kt", "kts", "c", "h", "cc", "cpp", "hpp", "cs", "rb", "php",
    "sh", "bash", "zsh", "fish", "sql", "html", "htm", "css", "scss", "sass", "less", "lock", "xml", "csv", "tsv",
    "swift", "m", "mm", "lua", "ex", "exs", "erl", "hs", "ml", "scala", "clj", "dart", "vue", "svelte", "proto",
    "gradle", "tf", "hcl", "env", "mk", "cmake", "ipynb", "r", "jl", "nix", "zig",
))


def _looks_like_path(token: str) -> bool:
    """A file path, not a URL, a version, `module.attr` or "e.g.": a known extension, or a slash."""
    if "://" in token or "@" in token or token.startswith("-") or re.fullmatch(r"[\d.]+\w*", token):
        return False
    name = token.rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return False
    return extension.lower() in _FILE_EXTENSIONS or ("/" in token and extension.isalnum())


def check_claimed_paths(final_message: str, changed_files: Sequence[str]) -> list[Finding]:
    changed = [c.replace("\\", "/").removeprefix("./") for c in changed_files]
    findings = []
    for claim in claimed_paths(final_message):
        path = claim.removeprefix("./")
        if any(c == path or c.endswith("/" + path) or path.endswith("/" + c) for c in changed):
            continue
        findings.append(Finding("hallucination", "claimed_path", path,
                                f"the final message claims {path!r} was changed; the diff does not touch it"))
    return findings
