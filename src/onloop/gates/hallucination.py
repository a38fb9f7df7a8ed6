"""Checks for things an agent made up: packages, modules and edits that do not exist.

Three pure checks over inputs the loop already has (manifest contents at the run's base and now, the
changed files, the agent's final message), so the lead can run them after every iteration:

(a) `check_dependencies`: names added to a manifest (`pyproject.toml` dependencies and optional
    dependencies, `requirements*.txt`, `package.json` dependencies/devDependencies/peer/optional,
    `Cargo.toml` [dependencies]/[dev-dependencies]/[build-dependencies]) are looked up through a
    `RegistryClient`. A name the registry does not know is a hallucination (and an invitation to
    slopsquatting: someone may register it later). A name nobody could vouch for gives a
    `could_not_verify` finding, never a silent pass. Path, git and workspace dependencies are skipped.
    Which client answers is the caller's choice: `onloop.gates.registry` holds the offline one (a
    synced index, lock files, the installed environment, earlier answers), because asking a registry
    over the network sends the agent's chosen string off the host. `lock_file_names` reads the lock
    files whose names the operator chose (poetry.lock, uv.lock, Pipfile.lock, package-lock.json,
    yarn.lock, pnpm-lock.yaml, Cargo.lock, requirements*.txt).
(b) `check_imports`: top-level modules imported by changed Python files that are not in the standard
    library, not in the repository tree, not importable in the given environment and not a declared
    dependency. Imports inside `try: ... except ImportError` are optional by construction and skipped.
(c) `check_claimed_paths`: file paths the final message says were changed that are not among the
    changed files. Only claims of edits that happened count, read clause by clause: each path belongs to
    the change verb nearest to it in its clause (the one before it, else the one after it: "calc.py was
    updated"), or, in a list under a heading like "Files changed:", to the heading's verb; and a verb
    that is negated ("could not change", "didn't edit", "was unable to", "failed to", "the write to
    calc.py was denied", "changed nothing") or not a statement of fact ("I'd need permission to edit",
    "should be updated", "tried to write", "if you change") claims nothing. An agent whose writes were
    denied says so; that is not a false claim.

Every hit is a frozen `Finding`; `kind` is "hallucination" for a hit and "could_not_verify" when the
truth could not be established. The lead records hallucinations as incidents.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

Ecosystem = Literal["pypi", "npm", "crates"]
ECOSYSTEMS: tuple[Ecosystem, ...] = ("pypi", "npm", "crates")
Exists = bool | None  # None: could not verify (registry unreachable, unexpected answer, no offline data)
NameKey = tuple[Ecosystem, str]  # an ecosystem and a name normalised with `normalise_name`

DEFAULT_BASE_URLS: Mapping[str, str] = {
    "pypi": "https://pypi.org", "npm": "https://registry.npmjs.org", "crates": "https://crates.io",
}
_CHANGE_VERB = re.compile(
    r"chang(?:e|es|ed|ing)|modif(?:y|ies|ied|ying|ications?)|updat(?:e|es|ed|ing)|edit(?:s|ed|ing)?|add(?:s|ed|ing)?"
    r"|creat(?:e|es|ed|ing)|(?:re)?(?:writ(?:e|es|ing|ten)|wrote)|fix(?:es|ed|ing)?|implement(?:s|ed|ing)?"
    r"|refactor(?:s|ed|ing)?|remov(?:e|es|ed|ing)|delet(?:e|es|ed|ing)|renam(?:e|es|ed|ing)|mov(?:e|es|ed|ing)"
    r"|touch(?:es|ed|ing)?|patch(?:es|ed|ing)?",
    re.IGNORECASE,
)
_PATH_TOKEN = re.compile(r"`([^`\s]+)`|(?<![\w/.@-])((?:[\w.-]+/)*[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,7})(?![\w/-])")
_PEP508_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


FindingKind = Literal["hallucination", "could_not_verify"]


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
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


@runtime_checkable
class DescribedRegistry(Protocol):
    """A client that can say who gave its last answer about a name, for the finding's evidence.

    Offline answers need this: "not in the pypi index synced on ..." tells the operator what to refresh,
    where a bare "pypi does not know it" would be a claim nobody made.
    """

    def describe(self, ecosystem: Ecosystem, name: str) -> str:
        """A clause that follows "<manifest> adds '<name>', ", e.g. "which pypi does not know"."""
        ...


# ---------------------------------------------------------------------------------------------- (a)


def normalise_name(ecosystem: Ecosystem, name: str) -> str:
    """The form a registry compares names in, so "PyYAML" in a lock file matches "pyyaml" in a manifest."""
    if ecosystem == "pypi":
        return re.sub(r"[-_.]+", "-", name.strip()).lower()  # PEP 503
    if ecosystem == "crates":
        return name.strip().lower().replace("-", "_")  # crates.io treats - and _ (and case) as one name
    return name.strip()  # npm: legacy names keep their capitals, and "JSONStream" is not "jsonstream"


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


# Lock files, by file name: the names in them were resolved and written by the operator's tools.
LOCK_FILES: Mapping[str, Ecosystem] = {
    "poetry.lock": "pypi", "uv.lock": "pypi", "Pipfile.lock": "pypi", "package-lock.json": "npm",
    "npm-shrinkwrap.json": "npm", "yarn.lock": "npm", "pnpm-lock.yaml": "npm", "Cargo.lock": "crates",
}


def is_lock_file(path: str) -> bool:
    name = Path(path).name
    return name in LOCK_FILES or (name.startswith("requirements") and name.endswith(".txt"))


def lock_file_names(path: str, content: str | None) -> frozenset[NameKey]:
    """The normalised names a lock file (or a requirements file) pins; parse errors give none."""
    name = Path(path).name
    ecosystem: Ecosystem = LOCK_FILES.get(name, "pypi")
    if not content or not is_lock_file(path):
        return frozenset()
    try:
        names = _LOCK_PARSERS.get(name, _requirements)(content)
    except (tomllib.TOMLDecodeError, ValueError, AttributeError, TypeError):
        return frozenset()
    return frozenset((ecosystem, normalise_name(ecosystem, n)) for n in names if n)


def _toml_packages(content: str) -> set[str]:
    """poetry.lock, uv.lock and Cargo.lock: an array of `[[package]]` tables with a `name`."""
    packages = tomllib.loads(content).get("package", [])
    return {p["name"] for p in packages if isinstance(p, dict) and isinstance(p.get("name"), str)}


def _pipfile_lock(content: str) -> set[str]:
    data = json.loads(content)
    return {n for key in ("default", "develop") for n in (data.get(key) or {})}


def _package_lock(content: str) -> set[str]:
    """package-lock.json: v2/v3 list `packages` by install path; v1 nests `dependencies`."""
    data = json.loads(content)
    names = {key.rsplit("node_modules/", 1)[1] for key in (data.get("packages") or {}) if "node_modules/" in key}
    stack = [data.get("dependencies")]
    while stack:
        deps = stack.pop()
        if isinstance(deps, dict):
            names.update(deps)
            stack.extend(entry.get("dependencies") for entry in deps.values() if isinstance(entry, dict))
    return names


def _yarn_lock(content: str) -> set[str]:
    """yarn.lock (classic and berry): unindented `"name@range", "name@npm:range":` entry headers."""
    names = set()
    for line in content.splitlines():
        header = line.rstrip()
        if not header or header[0] in " \t#" or not header.endswith(":"):
            continue
        for spec in header[:-1].split(","):
            spec = spec.strip().strip('"')
            at = spec.find("@", 1)  # a scope's own "@" is at index 0
            if at > 0:
                names.add(spec[:at])
    return names


def _pnpm_lock(content: str) -> set[str]:
    """pnpm-lock.yaml: the keys of `packages:` (and `snapshots:`), two spaces in, in any of its formats."""
    names, section = set(), ""
    for line in content.splitlines():
        if line and not line[0].isspace():
            section = line.split(":", 1)[0]
            continue
        is_key = line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":")
        if is_key and section in ("packages", "snapshots"):
            names.add(_pnpm_name(line.strip()[:-1]))
    return names - {""}


def _pnpm_name(key: str) -> str:
    """`/name/1.0.0` (v5), `/name@1.0.0(peer@2)` (v6) or `name@1.0.0` (v9), scoped or not."""
    key = key.strip("'\"").lstrip("/")
    scope, rest = key.split("/", 1) if key.startswith("@") and "/" in key else ("", key)
    cuts = [i for i in (rest.find("/"), rest.find("@")) if i >= 0]
    name = rest[:min(cuts)] if cuts else rest
    return f"{scope}/{name}" if scope else name


_LOCK_PARSERS: Mapping[str, Callable[[str], set[str]]] = {
    "poetry.lock": _toml_packages, "uv.lock": _toml_packages, "Cargo.lock": _toml_packages,
    "Pipfile.lock": _pipfile_lock, "package-lock.json": _package_lock, "npm-shrinkwrap.json": _package_lock,
    "yarn.lock": _yarn_lock, "pnpm-lock.yaml": _pnpm_lock,
}


def check_dependencies(changes: Iterable[tuple[str, str | None, str | None]], client: RegistryClient) -> list[Finding]:
    """`changes` are (manifest path, content before, content after); only added names are looked up."""
    findings = []
    for path, before, after in changes:
        for dep in added_dependencies(path, before, after):
            found = client.exists(dep.ecosystem, dep.name)
            if found is True:
                continue
            why = _why(client, dep, found)
            kind: FindingKind = "hallucination" if found is False else "could_not_verify"
            findings.append(Finding(kind, "dependency", dep.name, f"{dep.manifest} adds {dep.name!r}, {why}"))
    return findings


def _why(client: RegistryClient, dep: Dependency, found: Exists) -> str:
    if isinstance(client, DescribedRegistry):
        return client.describe(dep.ecosystem, dep.name)
    return f"which {dep.ecosystem} does not know" if found is False else f"and {dep.ecosystem} could not be reached"


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


def check_imports(
    changed_sources: Mapping[str, str],
    *,
    repo_root: Path,
    declared: Iterable[str] = (),
    installed: Callable[[str], bool] | None = None,
    already_imported: Iterable[str] = (),
) -> list[Finding]:
    """Modules imported by changed Python files that exist nowhere.

    `installed(name)` says whether the module can be found in the gate's environment; the default asks
    `importlib.util.find_spec` in this interpreter (pass `find_spec_in(python)` for another venv).
    `already_imported` are modules the code imported before the agent touched it (the base commit's
    versions of the changed files): the agent did not make those up, so they are not its findings.
    """
    declared_names = {normalise_name("pypi", d) for d in declared}
    is_installed = installed or _find_spec_here
    local = repo_module_names(repo_root)
    skip = {*sys.stdlib_module_names, *local, *already_imported, "__future__"}
    findings = []
    for path in sorted(changed_sources):
        if not path.endswith(".py"):
            continue
        for module in sorted(imported_modules(changed_sources[path])):
            if module in skip:
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


# Clauses: a sentence ends at . ! ? ; and a clause at a word that starts a contrasting or subordinate one.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_CLAUSE_WORDS = frozenset({"but", "however", "although", "though", "whereas", "while", "except", "because",
                           "since", "unless", "instead", "after", "before", "otherwise"})
# The words a verb's cues are looked for among stop at these (and at the previous change verb).
_LINK_WORDS = frozenset({",", "and", "or", "then", "so", "also"})
_NEGATIONS = frozenset({"not", "never", "no", "nothing", "none", "unable", "cannot", "failed", "fail", "fails",
                        "without", "neither", "nor"})
_UNREAL = frozenset({"would", "should", "could", "might", "may", "must", "will", "shall", "can", "need", "needs",
                     "needed", "want", "wants", "wanted", "try", "tries", "tried", "trying", "attempt", "attempted",
                     "attempting", "plan", "planned", "going", "please", "suggest", "suggested", "propose",
                     "proposed", "recommend", "if", "permission", "ought"})
_REFUSED = frozenset({"denied", "refused", "rejected", "blocked", "failed", "forbidden", "disallowed"})
_CUE_WINDOW = 6
_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|,")

Token = tuple[str, str]  # ("path", the path) or ("word", the lower-cased word or ",")


def claimed_paths(message: str) -> list[str]:
    """Paths the message says were changed, by a change verb that is neither negated nor hypothetical,
    or listed under a heading whose verb is (see (c) in the module docstring)."""
    claims: list[str] = []
    heading: bool | None = None  # the polarity of the list heading we are under, if any
    for line in message.replace("\u2019", "'").splitlines():
        stripped = line.strip()
        if not stripped:
            heading = None
            continue
        found, polarity = _line_claims(stripped, heading)
        if stripped.endswith(":") and polarity is not None:
            heading = polarity
        claims += [path for path in found if path not in claims]
    return claims


def _line_claims(line: str, heading: bool | None) -> tuple[list[str], bool | None]:
    """The paths one line claims, and the polarity of its last change verb (None: it has none)."""
    claims: list[str] = []
    last: bool | None = None
    for sentence in _SENTENCE_END.split(line):
        for clause in _clauses(_tokens(sentence)):
            verbs = {i: _is_claim(clause, i) for i, (kind, text) in enumerate(clause)
                     if kind == "word" and _CHANGE_VERB.fullmatch(text)}
            last = verbs[max(verbs)] if verbs else last
            for i, (kind, text) in enumerate(clause):
                if kind == "path" and _governing(clause, verbs, i, heading):
                    claims.append(text)
    return claims, last


def _tokens(sentence: str) -> list[Token]:
    """Paths and words in order; a path's own letters are never words (`src/update.py` is no verb)."""
    tokens: list[Token] = []
    position = 0
    for match in _PATH_TOKEN.finditer(sentence):
        tokens += [("word", w.lower()) for w in _TOKEN.findall(sentence[position:match.start()])]
        token = (match.group(1) or match.group(2) or "").strip(".,;:()'\"")
        tokens.append(("path", token) if _looks_like_path(token) else ("word", token.lower()))
        position = match.end()
    return tokens + [("word", w.lower()) for w in _TOKEN.findall(sentence[position:])]


def _clauses(tokens: list[Token]) -> list[list[Token]]:
    clauses: list[list[Token]] = [[]]
    for token in tokens:
        if token[0] == "word" and token[1] in _CLAUSE_WORDS:
            clauses.append([])
        else:
            clauses[-1].append(token)
    return clauses


def _governing(clause: list[Token], verbs: dict[int, bool], index: int, heading: bool | None) -> bool:
    """Whether the path at `index` is claimed: by the nearest change verb before it in its clause (and
    no modal or negation between them: "the fix should be applied to calc.py"), else the nearest after
    it, else (a bare list item) the heading's."""
    before = [i for i in verbs if i < index]
    after = [i for i in verbs if i > index]
    if before:
        verb = max(before)
        return verbs[verb] and not any(_is_cue(text) for _, text in clause[verb + 1:index])
    if after:
        return verbs[min(after)]
    return bool(heading)


def _is_cue(word: str) -> bool:
    """A word that negates what follows, refuses it ("blocked the write"), or makes it unreal (a wish,
    a plan, a condition)."""
    return word in _NEGATIONS or word in _UNREAL or word in _REFUSED or word.endswith(("n't", "'d", "'ll"))


def _is_claim(clause: list[Token], index: int) -> bool:
    """Whether the change verb at `index` states an edit that happened: no negation or unreal mood in
    the words leading to it, no "nothing" after it, no refusal later in its part of the clause."""
    cues: list[str] = []
    for kind, text in reversed(clause[max(0, index - _CUE_WINDOW):index]):
        if kind == "word" and (text in _LINK_WORDS or _CHANGE_VERB.fullmatch(text)):
            break
        cues.append(text)
    if any(_is_cue(c) for c in cues):
        return False
    if cues[:1] == ["to"] or cues[:2] == ["be", "to"]:  # "to edit", "to be changed": an intent
        return len(cues) > 1 and cues[cues.index("to") + 1:][:1] in (["managed"], ["able"])
    following: list[str] = []
    for kind, text in clause[index + 1:]:
        if kind == "word" and (text in _LINK_WORDS or _CHANGE_VERB.fullmatch(text)):
            break
        following.append(text)
    return following[:1] not in (["nothing"], ["no"], ["none"]) and not _REFUSED.intersection(following)


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
