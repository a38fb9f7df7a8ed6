"""The Python scanner: every feature of a module, found through the AST whatever its spelling.

A mechanism has many spellings: `sys.modules`, `import sys as s; s.modules`, `from sys import modules`,
`vars(sys)["modules"]`, `getattr(sys, "mod" + "ules")`, `importlib.import_module("sys").modules`,
`__builtins__["exec"]`. The scanner resolves every name it sees to a dotted name (`qualname`) through
imports, aliases bound once (`s = __import__("sys")`), `getattr`, `vars`, `__dict__`,
`__getattribute__`, `sys.modules[...]` and module-valued default arguments, and folds every string it
sees with the constant folder (`folding.py`), so that each rule is written once, against the resolved
name or the folded value. A name bound by assignment, argument or definition hides an import or a
builtin of that name in its own scope, so that ordinary variables named `t` or `exec` stay silent.

The rules, in brief: a use of a name in `_REFERENCES` (or below it); a frame attribute; an import of a
test framework, or of a module name the folder cannot compute (unless it is a package's own lazy import
or a plugin loader under a fixed package prefix); an assignment to an attribute or an item of a module;
`open` of a file descriptor number; unpickling a constant; exiting, killing or installing signal
handlers at import time (a lexical notion: outside any function and any `if __name__ == "__main__":`);
and strings that name the runner or its reports. Code given to `exec`/`eval`/`compile` as a constant is
scanned in turn and reported at the call.
"""

from __future__ import annotations

import ast
import builtins
import itertools
from collections import Counter
from collections.abc import Callable

from onloop.policy.review._source import parsed, simple_assignment, source_lines
from onloop.policy.review.features import (
    DYNAMIC,
    EXIT,
    IMPORT,
    PATCH,
    RAWFD,
    RUNNER,
    RUNNER_TEXT,
    STATE,
    Feature,
    string_features,
)
from onloop.policy.review.folding import Folder


def _os_and_posix(*names: str) -> tuple[str, ...]:
    # `posix` is what `os` re-exports on POSIX: `import posix; posix._exit(0)` is the same call.
    return tuple(f"{module}.{name}" for name in names for module in ("os", "posix"))


# Containers of the interpreter's state: an item set, or a mutating method called, on them is a patch;
# on the process's environment and import path, a change of process-wide state.
_INTERPRETER_STATE = frozenset({"builtins", "sys.modules", "sys.meta_path", "sys.path_hooks"})
_PROCESS_STATE = frozenset({"os.environ", "os.environb", "sys.path"})
_MUTATORS = frozenset({"update", "setdefault", "__setitem__", "__delitem__", "pop", "popitem", "clear", "insert",
                       "append", "extend", "remove", "__ior__"})
_SETATTRS = frozenset({"setattr", "delattr", "object.__setattr__", "object.__delattr__", "type.__setattr__",
                       "type.__delattr__", "types.ModuleType.__setattr__", "operator.setitem", "operator.delitem"})


# Dotted names (after resolving imports and aliases) whose mere use is a feature; a prefix matches too.
_REFERENCES: dict[str, str] = {
    **dict.fromkeys(
        ("sys.modules", "sys._getframe", "sys._current_frames", "inspect.stack", "inspect.currentframe",
         "inspect.getouterframes", "inspect.getinnerframes", "inspect.trace", "inspect.getframeinfo",
         "traceback.extract_stack", "traceback.walk_stack", "traceback.format_stack", "traceback.print_stack",
         "traceback.StackSummary", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.getppid",
         "sys.gettrace", "sys.getprofile", "__main__", "sys.orig_argv", "sys.argv"),
        RUNNER,
    ),
    **dict.fromkeys(
        ("sys.settrace", "sys.setprofile", "threading.settrace", "threading.setprofile", "sys.monitoring",
         "threading.settrace_all_threads", "threading.setprofile_all_threads", "sys.addaudithook",
         "sys.meta_path", "sys.path_hooks", "faulthandler", "ctypes", "_ctypes"),
        PATCH,
    ),
    # The exec family replaces the process (its exit code and what it prints) anywhere it runs.
    **dict.fromkeys(_os_and_posix("_exit", "abort", "execv", "execve", "execl", "execle", "execlp", "execlpe",
                                  "execvp", "execvpe", "fexecve"), EXIT),
    "atexit.register": EXIT,
    **dict.fromkeys(_os_and_posix("write", "writev", "pwrite", "dup", "dup2"), RAWFD),
    # Process-wide state one module changes for every other: the environment, the working directory,
    # the import path, modules reloaded in place.
    **dict.fromkeys((*_os_and_posix("putenv", "unsetenv", "chdir", "fchdir"), "importlib.reload", "imp.reload"),
                    STATE),
    **dict.fromkeys(
        ("exec", "eval", "compile", "marshal.loads", "marshal.load", "types.CodeType", "types.FunctionType",
         "runpy.run_path", "runpy.run_module"),
        DYNAMIC,
    ),
}
# Ordinary in a function (a CLI's main, a server's handler); suspicious when they run at import time.
_IMPORT_TIME = frozenset({"sys.exit", "exit", "quit", "os.kill", "os.killpg", "signal.signal", "signal.alarm",
                          "signal.setitimer", "signal.raise_signal", "signal.pthread_kill"})
# Library-wide settings a test module changes for every test after it when it runs them at import:
# hypothesis profiles (max_examples=1), seeds, warning filters, numeric contexts, the locale.
_IMPORT_TIME_STATE = frozenset({"random.seed", "numpy.random.seed", "warnings.filterwarnings",
                                "warnings.simplefilter", "warnings.resetwarnings", "locale.setlocale",
                                "decimal.setcontext", "sys.setrecursionlimit", "numpy.seterr", "numpy.set_printoptions",
                                "hypothesis.settings.register_profile", "hypothesis.settings.load_profile",
                                "hypothesis.seed", "faker.Faker.seed", "torch.manual_seed"})
_FRAME_ATTRS = frozenset({"f_back", "f_globals", "f_locals", "f_code", "f_trace", "tb_frame", "gi_frame",
                          "cr_frame", "ag_frame"})
_TEST_FRAMEWORKS = frozenset({"pytest", "_pytest", "unittest", "nose", "nose2", "py", "xdist", "conftest"})
_IMPORTERS = frozenset({"__import__", "importlib.import_module", "importlib.__import__"})
_PICKLES = frozenset({"pickle.loads", "_pickle.loads", "dill.loads", "cloudpickle.loads"})
_FD_OPENERS = frozenset({"open", "io.open", "os.fdopen"})
_BUILTIN_NAMES = frozenset(dir(builtins))
_MAX_PAYLOAD_DEPTH = 2


def _is_test_framework(module: str) -> bool:
    top = module.split(".")[0]
    return top in _TEST_FRAMEWORKS or top.startswith("pytest_")


def _import_detail(module: str) -> str:
    # Reported by the top-level package, so that `import unittest` and `import unittest.mock` count as one.
    return f"import {module.split('.')[0]}"


def _join(base: str, attr: str) -> str:
    # Builtins are named bare, so that `builtins.exec`, `__builtins__["exec"]` and `exec` are one name.
    return attr if base == "builtins" and attr != "__dict__" else f"{base}.{attr}"


def _span(node: ast.expr | ast.stmt) -> tuple[int, int, int, int]:
    return node.lineno, node.col_offset, node.end_lineno or node.lineno, node.end_col_offset or node.col_offset


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    return outer[:2] <= inner[:2] and inner[2:] <= outer[2:] and outer != inner


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    named = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    return named and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


class _Scanner(ast.NodeVisitor):
    """Walks one module and records every feature, with imports and aliases resolved to dotted names."""

    def __init__(self, tree: ast.Module, text: str, depth: int) -> None:
        self.lines = source_lines(text)
        self.features: list[Feature] = []
        self._payload_depth = depth
        self._function_depth = 0
        self._main_guard = False
        self._consumed: set[int] = set()  # nodes already reported by a more specific rule
        self._arguments: set[int] = set()  # `sys.argv` nodes that read the program's arguments
        self.aliases = _aliases(tree)
        # A name bound by assignment, argument or definition hides a builtin of that name, and inside a
        # function an import too, in its own scope only: `t = Template()` in one function does not hide
        # `import typing as t`. At module level imports win, so that `if 0: sys = None` hides nothing.
        module_names = _scope_names(tree.body) - set(self.aliases)
        self._scopes: list[dict[str, str | None]] = [dict.fromkeys(module_names)]
        self._values: dict[str, str] = {}
        self.folder = Folder(self.qualname)
        single = _single_assignments(tree)
        self.folder.env = _constant_env(single, self.folder)
        _value_aliases(single, self.qualname, self._values)

    # Names ------------------------------------------------------------------------------------------------

    def qualname(self, node: ast.expr) -> str | None:
        """The dotted name `node` refers to, through imports, aliases, `getattr`, `vars` and `__dict__`."""
        if isinstance(node, ast.Name):
            if node.id in self._values:
                return self._values[node.id]
            for scope in reversed(self._scopes):
                if node.id in scope:
                    return scope[node.id]
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id == "__builtins__":
                return "builtins"
            return node.id if node.id in _BUILTIN_NAMES else None
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return _join(base, node.attr) if base else None
        if isinstance(node, ast.Subscript):
            return self._subscript_name(node)
        if isinstance(node, ast.Call):
            return self._call_name(node)
        return None

    def _subscript_name(self, node: ast.Subscript) -> str | None:
        base, key = self.qualname(node.value), self.folder.fold(node.slice)
        if base is None or not isinstance(key, str):
            return None
        if base == "sys.modules":
            return key
        if base == "builtins" or base.endswith(".__dict__"):
            return _join(base.removesuffix(".__dict__"), key)
        return None

    def _call_name(self, node: ast.Call) -> str | None:
        func = self.qualname(node.func)
        first = self.folder.fold(node.args[0]) if node.args else None
        if (func in _IMPORTERS or func == "sys.modules.get") and isinstance(first, str):
            return first
        if func == "getattr" and len(node.args) >= 2:
            base, attr = self.qualname(node.args[0]), self.folder.fold(node.args[1])
            return _join(base, attr) if base and isinstance(attr, str) else None
        if func and func.endswith(".__getattribute__") and isinstance(first, str):
            return _join(func.removesuffix(".__getattribute__"), first)
        if func == "vars" and len(node.args) == 1:
            base = self.qualname(node.args[0])
            return f"{base}.__dict__" if base else None
        return None

    # Recording --------------------------------------------------------------------------------------------

    def add(self, category: str, detail: str, node: ast.expr | ast.stmt) -> None:
        line = node.lineno
        excerpt = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.features.append(Feature(category, detail, line, _span(node), excerpt))

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return  # docstrings and bare strings say nothing about what the code does
        if isinstance(node, ast.expr) and not isinstance(node, ast.Name) and id(node) not in self._consumed:
            value = self.folder.fold(node)
            if isinstance(value, str | bytes | tuple):
                self._strings(value, node)
                return  # a folded constant: its parts were folded with it
        stored = isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)  # a binding, not a use
        if isinstance(node, ast.Subscript | ast.Call):
            self._mark_argument_reads(node)
        if isinstance(node, ast.Name | ast.Attribute | ast.Subscript | ast.Call) and not stored:
            self._reference(node)
        super().visit(node)

    def _mark_argument_reads(self, node: ast.Subscript | ast.Call) -> None:
        """`sys.argv[1]`, `sys.argv[2:]`, `len(sys.argv)`: a program reading its arguments, not asking how
        it was started (`sys.argv[0]`, `'-m' in sys.argv`, which stay features)."""
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1:
                self._arguments.add(id(node.args[0]))
            return
        index = node.slice.lower if isinstance(node.slice, ast.Slice) else node.slice
        if isinstance(index, ast.Constant) and isinstance(index.value, int) and index.value >= 1:
            self._arguments.add(id(node.value))

    def _strings(self, value: object, node: ast.expr) -> None:
        texts = value if isinstance(value, tuple) else (value,)
        for text in texts:
            if isinstance(text, str | bytes):
                decoded = text.decode("latin-1") if isinstance(text, bytes) else text
                for category, detail in string_features(decoded):
                    self.add(category, detail, node)

    def _reference(self, node: ast.Name | ast.Attribute | ast.Subscript | ast.Call) -> None:
        if isinstance(node, ast.Attribute) and node.attr in _FRAME_ATTRS:
            self.add(RUNNER, f"frame attribute .{node.attr}", node)
        name = self.qualname(node)
        if name is None:
            return
        prefixes = [".".join(name.split(".")[:i]) for i in range(name.count(".") + 1, 0, -1)]
        for prefix in prefixes:
            if prefix in _REFERENCES:
                if not (prefix == "sys.argv" and id(node) in self._arguments):
                    self.add(_REFERENCES[prefix], prefix, node)
                break
        if name in _IMPORT_TIME and self._at_import_time():
            self.add(EXIT, f"{name} at import time", node)
        if name in _IMPORT_TIME_STATE and self._at_import_time():
            self.add(STATE, f"{name} at import time", node)

    def _at_import_time(self) -> bool:
        return self._function_depth == 0 and not self._main_guard

    # Statements -------------------------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _is_test_framework(alias.name) or (alias.name == "doctest" and self._at_import_time()):
                self.add(IMPORT, _import_detail(alias.name), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level and _is_test_framework(node.module):
            self.add(IMPORT, _import_detail(node.module), node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # Decorators and defaults run at import time; the body runs when called.
        for part in [*getattr(node, "decorator_list", []), *node.args.defaults, *node.args.kw_defaults]:
            if part is not None:
                self.visit(part)
        body = node.body if isinstance(node.body, list) else [node.body]
        self._function_depth += 1
        self._scopes.append(self._function_scope(node, body))
        for statement in body:
            self.visit(statement)
        self._scopes.pop()
        self._function_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def _function_scope(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, body: list[ast.stmt] | list[ast.expr]
    ) -> dict[str, str | None]:
        """Local names hide outer ones, except an argument whose default is a module: `def f(s=sys)`."""
        scope: dict[str, str | None] = dict.fromkeys(_scope_names(body, node.args))
        positional = [*node.args.posonlyargs, *node.args.args]
        pairs = [*zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults, strict=True),
                 *zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)]
        for argument, default in pairs:
            if default is not None and (name := self.qualname(default)):
                scope[argument.arg] = name
        return scope

    def visit_If(self, node: ast.If) -> None:
        if not _is_main_guard(node.test):
            self.generic_visit(node)
            return
        guarded, self._main_guard = self._main_guard, True
        for statement in node.body:
            self.visit(statement)
        self._main_guard = guarded
        for statement in node.orelse:
            self.visit(statement)

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = self.qualname(exc) if exc is not None else None
        if name in ("SystemExit", "KeyboardInterrupt") and self._at_import_time():
            self.add(EXIT, f"raise {name} at import time", node)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete) -> None:
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        for target in targets:
            self._patch(target)
            self.visit(target)
        value = getattr(node, "value", None)  # annotations are not visited: naming a type does nothing
        if value is not None:
            self.visit(value)

    visit_AugAssign = visit_Assign
    visit_AnnAssign = visit_Assign
    visit_Delete = visit_Assign

    def _patch(self, target: ast.expr) -> None:
        if isinstance(target, ast.Tuple | ast.List | ast.Starred):
            for part in target.elts if not isinstance(target, ast.Starred) else [target.value]:
                self._patch(part)
        elif isinstance(target, ast.Attribute):
            base = self.qualname(target.value)
            if base is not None:
                self.add(PATCH, f"assigns {base}.{target.attr}", target)
            elif target.attr == "__code__":
                self.add(PATCH, "assigns a function's __code__", target)
        elif isinstance(target, ast.Subscript):
            base = self.qualname(target.value) or ""
            if base in _INTERPRETER_STATE or base.endswith(".__dict__"):
                self.add(PATCH, f"assigns an item of {base}", target)
            elif base in _PROCESS_STATE:
                self.add(STATE, f"assigns an item of {base}", target)

    def visit_Call(self, node: ast.Call) -> None:
        func = self.qualname(node.func) or ""
        if func in _IMPORTERS and node.args:
            self._dynamic_import(node)
        elif func in _SETATTRS and node.args and (base := self.qualname(node.args[0])):
            self.add(PATCH, f"{func} on {base}", node)
        elif isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS:
            self._mutation(node.func.attr, self.qualname(node.func.value) or "", node)
        elif func in _FD_OPENERS and node.args and isinstance(self.folder.fold(node.args[0]), int):
            self.add(RAWFD, f"{func} of a file descriptor number", node)
        elif func in _PICKLES and node.args and isinstance(self.folder.fold(node.args[0]), bytes):
            self.add(DYNAMIC, f"{func} of a constant", node)
        elif func in ("exec", "eval", "compile") and node.args:
            self._payload(node)
        self.generic_visit(node)

    def _mutation(self, method: str, base: str, node: ast.Call) -> None:
        if base in _INTERPRETER_STATE or base.endswith(".__dict__"):
            self.add(PATCH, f"{method} on {base}", node)
        elif base in _PROCESS_STATE:
            self.add(STATE, f"{method} on {base}", node)

    def _dynamic_import(self, node: ast.Call) -> None:
        if _within_package(node):
            return
        name = self.folder.fold(node.args[0])
        if isinstance(name, str):
            if _is_test_framework(name):
                self.add(IMPORT, _import_detail(name), node)
                self._consumed.add(id(node.args[0]))
        elif not self._package_prefixed(node.args[0]):
            self.add(IMPORT, "import of a computed module name", node)

    def _package_prefixed(self, node: ast.expr) -> bool:
        """`f"myapp.plugins.{name}"`: a plugin loader inside a known package, not a hidden import."""
        while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            node = node.left
        if isinstance(node, ast.JoinedStr) and node.values:
            node = node.values[0]
        prefix = self.folder.fold(node)
        if not isinstance(prefix, str) or RUNNER_TEXT.search(prefix):
            return False
        package, dot, _ = prefix.partition(".")
        return bool(package and dot)

    def _payload(self, node: ast.Call) -> None:
        """Code handed to exec/eval as a constant is scanned too, reported at the call."""
        source = self.folder.fold(node.args[0])
        if not isinstance(source, str | bytes) or self._payload_depth >= _MAX_PAYLOAD_DEPTH:
            return
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        inner = python_features(text, self._payload_depth + 1) or []
        for feature in inner:
            self.add(feature.category, f"in exec payload: {feature.detail}", node)


def _within_package(call: ast.Call) -> bool:
    """`import_module(name, __name__)`: the lazy-import idiom of a package's own submodules."""
    package = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "package"), None)
    return isinstance(package, ast.Name) and package.id in ("__name__", "__package__")


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Import aliases anywhere in the module: local name -> dotted name."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _scope_names(body: list[ast.stmt] | list[ast.expr], arguments: ast.arguments | None = None) -> set[str]:
    """Names one scope binds other than by import (nested functions and classes are their own scopes)."""
    names: set[str] = set()
    if arguments is not None:
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
        names.update(a.arg for a in every if a is not None)
    declared: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            declared.update(node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names - declared


def _single_assignments(tree: ast.Module) -> list[tuple[str, ast.expr]]:
    """`name = value` for names bound exactly once in the module, in source order."""
    stores = Counter(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    nodes = sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign)), key=lambda n: (n.lineno, n.col_offset)
    )
    pairs = [simple_assignment(n) for n in nodes]
    return [(name, value) for name, value in pairs if name and value is not None and stores[name] == 1]


def _value_aliases(
    single: list[tuple[str, ast.expr]], qualname: Callable[[ast.expr], str | None], values: dict[str, str]
) -> None:
    """Names assigned once to a module or a function of one: `s = __import__("sys")`, `ex = exec`.

    `values` is filled in place, in source order, so that `s = sys` then `m = s.modules` chain.
    """
    for name, value in single:
        if target := qualname(value):
            values[name] = target


def _constant_env(single: list[tuple[str, ast.expr]], folder: Folder) -> dict[str, object]:
    """Names assigned once, to a value the folder computes: `P = "py"; P + "test"` folds."""
    for name, value in single:
        folded = folder.fold(value)
        if folded is not None:
            folder.env[name] = folded
    return folder.env


def _dedupe(features: list[Feature]) -> list[Feature]:
    """Drop features nested in a feature of the same category (`sys.modules` inside `sys.modules.get`).

    A sweep by start position (outer spans sort before the spans they contain), so that a file with
    thousands of features stays linear rather than quadratic.
    """
    ordered = sorted(dict.fromkeys(features), key=lambda f: (f.category, f.span[:2], -f.span[2], -f.span[3]))
    kept: list[Feature] = []
    for _, group in itertools.groupby(ordered, key=lambda f: f.category):
        covering: list[Feature] = []
        for feature in group:
            covering = [c for c in covering if c.span[2:] >= feature.span[:2]]
            if not any(_contains(c.span, feature.span) for c in covering):
                kept.append(feature)
            covering.append(feature)
    return kept


_CLI_PARSERS = frozenset({"argparse", "optparse", "getopt", "click", "typer", "fire", "docopt"})


def _is_script(tree: ast.Module) -> bool:
    """A module meant to be run: it has a `__main__` guard or imports a command-line parser."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            return True
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in _CLI_PARSERS for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _CLI_PARSERS:
            return True
    return False


def python_features(text: str, depth: int = 0) -> list[Feature] | None:
    """The features of a Python module, or None if it does not parse (the caller falls back to lines).

    `depth` counts the exec payloads `text` is nested in: a constant payload is scanned as a module of
    its own, at most `_MAX_PAYLOAD_DEPTH` deep.
    """

    def collect(tree: ast.Module) -> list[Feature]:
        scanner = _Scanner(tree, text, depth)
        scanner.visit(tree)
        if _is_script(tree):  # a program reads its own command line; a library asking for it is looking
            return [f for f in scanner.features if f.detail != "sys.argv"]  # at how it was started
        return scanner.features

    features = parsed(text, collect)
    return None if features is None else _dedupe(features)
