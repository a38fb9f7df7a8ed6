"""The review triggers: changed expectations in tests, and suspicious mechanisms in non-test code.

Each mechanism is written several ways (the detector must catch a mechanism, not a spelling), and each
table has near-misses of ordinary code that must stay clean.
"""

from __future__ import annotations

import base64
import codecs
import textwrap

import pytest

from onloop.policy.review import ReviewFinding, changed_expectations, suspicious_code

RUNNER = "inspects the test runner"
IMPORT = "imports a test framework"
PATCH = "patches the interpreter"
EXIT = "controls how the process ends"
DYNAMIC = "runs dynamic code"
RAWFD = "writes to raw file descriptors"
REPORT = "names test reports or test files"

VAR = "PYTEST_CURRENT_TEST"
CODES = ", ".join(str(ord(c)) for c in "pytest")


def code(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def scan(after: str, before: str | None = None, path: str = "src/app.py") -> list[ReviewFinding]:
    return suspicious_code(path, before, code(after))


# -- suspicious code: one table per mechanism, several spellings each -----------------------------------

RUNNER_SPELLINGS = {
    "in sys.modules": "import sys\nif 'pytest' in sys.modules:\n    ANSWER = 42\n",
    "sys.modules.get of a concatenation": "import sys\nunder_test = sys.modules.get('py' + 'test') is not None\n",
    "any over sys.modules": "import sys\nunder_test = any('unittest' in m for m in sys.modules)\n",
    "environ.get": f"import os\nunder_test = os.environ.get('{VAR}')\n",
    "in environ": f"import os\nunder_test = '{VAR}' in os.environ\n",
    "getenv": "import os\nunder_test = os.getenv('PYTEST_XDIST_WORKER')\n",
    "jest worker": "import os\nunder_test = 'JEST_WORKER_ID' in os.environ\n",
    "onloop's own variables": "import os\nunder_test = os.environ.get('ONLOOP_RUN_ID')\n",
    "getattr of __import__": "modules = getattr(__import__('sys'), 'modules')\n",
    "import_module then attribute": "import importlib\nmods = importlib.import_module('sys').modules\n",
    "aliased sys": "import sys as s\ndef loaded():\n    return list(s.modules)\n",
    "from sys import modules": "from sys import modules as m\ndef loaded():\n    return len(m)\n",
    "vars of sys": "import sys\nmods = vars(sys)['modules']\n",
    "__dict__ with a folded key": "import sys\nmods = sys.__dict__['mod' + 'ules']\n",
    "__getattribute__": "import sys\nmods = sys.__getattribute__('modules')\n",
    "module kept in a variable": "s = __import__('sys')\nm = s.modules\ndef loaded():\n    return list(m)\n",
    "module as a default argument": "import sys\ndef loaded(s=sys):\n    return list(s.modules)\n",
    "a dead rebinding does not hide the import": "import sys\nif False:\n    sys = None\nx = sys.modules\n",
    "__main__ of the runner": "import __main__\nRUNNER = __main__.__file__\n",
    "trace function of coverage": "import sys\nUNDER_COVERAGE = sys.gettrace() is not None\n",
    "argv endswith": "import sys\nunder_test = sys.argv[0].endswith('pytest')\n",
    "argv searched": "import sys\nunder_test = any('py.test' in a for a in sys.argv)\n",
    "chr sequence": f"import os\nname = ''.join(chr(c) for c in [{CODES}])\n",
    "map chr": f"import sys\nunder_test = ''.join(map(chr, ({CODES},))) in sys.argv[0]\n",
    "hex decode": f"import os\nunder_test = os.getenv(bytes.fromhex('{VAR.encode().hex()}').decode())\n",
    "base64 decode": f"import base64\nNAME = base64.b64decode('{base64.b64encode(VAR.encode()).decode()}').decode()\n",
    "rot13": f"import codecs\nNAME = codecs.decode('{codecs.encode(VAR, 'rot13')}', 'rot13')\n",
    "reversed slice": f"import os\nunder_test = os.environ.get('{VAR[::-1]}'[::-1])\n",
    "f-string of a constant": "import os\nPREFIX = 'PYTEST'\nunder_test = os.environ.get(f'{PREFIX}_CURRENT_TEST')\n",
    "percent format": "import os\nunder_test = os.environ.get('%s_CURRENT_TEST' % 'PYTEST')\n",
    "str.format": "import sys\nunder_test = '{}test'.format('py') in sys.modules\n",
    "inspect.stack": "import inspect\ndef is_test():\n    return any('test' in f.function for f in inspect.stack())\n",
    "_getframe": "import sys\ndef caller():\n    return sys._getframe(1).f_code.co_name\n",
    "currentframe.f_back": "import inspect\ndef caller():\n    return inspect.currentframe().f_back\n",
    "extract_stack": "import traceback\ndef callers():\n    return [f.filename for f in traceback.extract_stack()]\n",
    "aliased stack": "from inspect import stack as frames\ndef callers():\n    return frames()\n",
    "traceback frame": "import sys\ndef frame():\n    return sys.exc_info()[2].tb_frame\n",
    "proc self": "def cmdline():\n    return open('/proc/self/cmdline').read()\n",
    "proc of the parent": "import os\ndef parent():\n    return open('/proc/%d/cmdline' % os.getppid()).read()\n",
    "gc objects": "import gc\ndef find():\n    return [o for o in gc.get_objects() if type(o).__name__ == 'Session']\n",
    "gc referrers": "import gc\ndef owners(x):\n    return gc.get_referrers(x)\n",
    "tox environment": "import os\nIN_TOX = 'TOX_ENV_NAME' in os.environ\n",
}

IMPORT_SPELLINGS = {
    "import pytest": "import pytest\n",
    "import unittest.mock": "import unittest.mock\n",
    "from _pytest": "from _pytest.runner import runtestprotocol\n",
    "__import__": "framework = __import__('pytest')\n",
    "import_module of a concatenation": "import importlib\nframework = importlib.import_module('py' + 'test')\n",
    "import_module of a computed name": "import importlib\ndef load(name):\n    return importlib.import_module(name)\n",
    "__import__ of a computed name": "def load(parts):\n    return __import__('.'.join(parts))\n",
    "pytest plugin module": "from pytest_xdist import plugin\n",
}

PATCH_SPELLINGS = {
    "TestCase method": "import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n",
    "imported class": "from unittest import TestCase\nTestCase.assertTrue = lambda *a, **k: None\n",
    "builtins attribute": "import builtins\nbuiltins.print = lambda *a, **k: None\n",
    "aliased builtins": "import builtins as b\nb.open = lambda *a, **k: None\n",
    "setattr on builtins": "import builtins\nsetattr(builtins, 'len', lambda x: 3)\n",
    "__builtins__ item": "__builtins__['len'] = lambda x: 3\n",
    "sys.modules item": "import sys, types\nsys.modules['pytest'] = types.ModuleType('pytest')\n",
    "setattr through __import__": "setattr(__import__('unittest').TestCase, 'fail', lambda *a: None)\n",
    "settrace": "import sys\nsys.settrace(lambda *a: None)\n",
    "threading settrace": "import threading\nthreading.settrace(lambda *a: None)\n",
    "audit hook": "import sys\nsys.addaudithook(lambda event, args: None)\n",
    "import hook": "import sys\nsys.meta_path.insert(0, object())\n",
    "faulthandler": "import faulthandler\nfaulthandler.enable()\n",
    "ctypes": "import ctypes\nctypes.pythonapi.Py_IncRef\n",
    "ctypes from import": "from ctypes import CDLL\nlibc = CDLL(None)\n",
    "ctypes through import_module": "import importlib\nlibc = importlib.import_module('ctypes').CDLL(None)\n",
}

EXIT_SPELLINGS = {
    "atexit call": "import atexit\natexit.register(lambda: None)\n",
    "atexit decorator": "import atexit\n@atexit.register\ndef bye():\n    pass\n",
    "os._exit in a function": "import os\ndef done():\n    os._exit(0)\n",
    "sys.exit at import": "import sys\nsys.exit(0)\n",
    "raise SystemExit at import": "raise SystemExit(0)\n",
    "exit builtin at import": "exit(0)\n",
    "os.kill at import": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "signal handler at import": "import signal\nsignal.signal(signal.SIGTERM, lambda *a: None)\n",
    "sys.exit in a decorator": "import sys\ndef deco(f):\n    return f\n@deco(sys.exit(0))\ndef f():\n    pass\n",
}

RAWFD_SPELLINGS = {
    "os.write": "import os\ndef say():\n    os.write(1, b'4 passed')\n",
    "os.dup2": "import os\ndef hide(fd):\n    os.dup2(fd, 2)\n",
    "os.fdopen of a number": "import os\nout = os.fdopen(1, 'w')\n",
    "open of a number": "err = open(2, 'w')\n",
}

DYNAMIC_SPELLINGS = {
    "exec": "def run(src):\n    exec(src)\n",
    "eval": "def calc(expr):\n    return eval(expr)\n",
    "compile": "def build(src):\n    return compile(src, '<x>', 'exec')\n",
    "exec through getattr": "import builtins\ngetattr(builtins, 'ex' + 'ec')('x = 1')\n",
    "eval through __builtins__": "def calc(e):\n    return __builtins__.eval(e)\n",
    "marshal": "import marshal\ndef load(data):\n    return marshal.loads(data)\n",
    "pickle of a constant": "import pickle\nVALUE = pickle.loads(b'\\x80\\x04K*.')\n",
    "FunctionType": "import types\ndef make(c):\n    return types.FunctionType(c, {})\n",
    "runpy": "import runpy\nrunpy.run_path('other.py')\n",
    "exec as a default argument": "def run(code, run=exec):\n    run(code)\n",
    "exec kept in a variable": "go = exec\n",
}

REPORT_SPELLINGS = {
    "junit": "def result():\n    return open('junit.xml').read()\n",
    "lastfailed": "from pathlib import Path\nFAILED = Path('.pytest_cache') / 'v' / 'cache' / 'lastfailed'\n",
    "report.json": "import json\ndef load():\n    return json.load(open('build/report.json'))\n",
    "test glob": "import glob\nTESTS = glob.glob('tests/test_*.py')\n",
    "tests dir": "from pathlib import Path\nTESTS = Path(__file__).parent.parent / 'tests'\n",
    "test-results": "import os\nOUT = os.path.join('test-results', 'out.xml')\n",
    "coverage file": "import sqlite3\ndb = sqlite3.connect('.coverage')\n",
    "conftest": "import os\ndef peek(root):\n    return open(os.path.join(root, 'conftest.py')).read()\n",
    "a test file": "def answers():\n    return open('src/' + 'test_app.py').read()\n",
}

TABLES = [
    (RUNNER, RUNNER_SPELLINGS),
    (IMPORT, IMPORT_SPELLINGS),
    (PATCH, PATCH_SPELLINGS),
    (EXIT, EXIT_SPELLINGS),
    (RAWFD, RAWFD_SPELLINGS),
    (DYNAMIC, DYNAMIC_SPELLINGS),
    (REPORT, REPORT_SPELLINGS),
]
SPELLINGS = [
    pytest.param(mechanism, snippet, id=f"{mechanism.split()[0]}-{name}")
    for mechanism, table in TABLES
    for name, snippet in table.items()
]


@pytest.mark.parametrize(("mechanism", "snippet"), SPELLINGS)
def test_each_spelling_of_a_mechanism_is_caught(mechanism: str, snippet: str) -> None:
    findings = scan(snippet)
    assert findings, snippet
    assert any(mechanism in f.evidence for f in findings), [f.evidence for f in findings]
    assert all(f.kind == "suspicious_code" and f.path == "src/app.py" for f in findings)
    assert all(f.evidence.startswith("line ") for f in findings)


@pytest.mark.parametrize(("mechanism", "snippet"), SPELLINGS)
def test_the_same_code_already_in_the_base_is_not_reported(mechanism: str, snippet: str) -> None:
    assert scan(snippet, before=code(snippet)) == []


ORDINARY = {
    "argparse CLI": """
        import argparse
        import sys

        def main(argv=None):
            parser = argparse.ArgumentParser(prog="app")
            parser.add_argument("--verbose", action="store_true")
            args = parser.parse_args(argv if argv is not None else sys.argv[1:])
            if len(sys.argv) > 1 and sys.argv[1] == "--help":
                return 0
            return 1 if args.verbose else 0

        if __name__ == "__main__":
            sys.exit(main())
    """,
    "environment for configuration": """
        import os
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        HOME = os.environ.get("HOME", "/")
        DEBUG = os.getenv("APP_DEBUG") == "1"
        MODE = os.environ.get("APP_ENV", "test")
    """,
    "string helpers": """
        def greeting(name, items, k, v):
            head = "Hello, %s" % name.title()
            body = ", ".join(items)
            pair = "%s=%s" % (k, v)
            tail = "{}-{}".format(name, len(items))
            return f"{head}: {body} ({pair}) {tail:>10}"
    """,
    "ordinary words": """
        WORDS = ["latest", "contest", "attest", "protest", "report", "results", "coverage", "test", "unit"]
        FILES = ["config.xml", "results.csv", "output.json", "latest.xml", "/proc/cpuinfo", "nose"]
        COLORS = {"spec": "blue", "testing": "green"}
    """,
    "introspection that is not stack inspection": """
        import gc
        import inspect
        import logging
        import traceback

        log = logging.getLogger(__name__)

        def describe(fn):
            gc.collect()
            params = inspect.signature(fn).parameters
            if inspect.isclass(fn):
                return "class"
            try:
                return str(params)
            except ValueError:
                log.error(traceback.format_exc())
                return ""
    """,
    "re.compile and a compile of our own": """
        import re
        from re import compile as rx

        NUMBER = re.compile(r"\\d+")
        WORD = rx(r"\\w+")

        def compile(source):
            return source.upper()

        OUT = compile("x")
    """,
    "signals and exits inside functions": """
        import os
        import signal
        import sys

        def serve():
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

        def main():
            if not os.path.exists("x"):
                sys.exit(2)
    """,
    "attributes of own objects": """
        import typing as t

        class Config:
            debug = False

        Config.debug = True

        class Box:
            def __init__(self, **kw):
                for k, v in kw.items():
                    setattr(self, k, v)
                self.size = 3

        def render(Template):
            t = Template()
            t.name = "page"
            return t
    """,
    "plugin loading inside a package": """
        import importlib

        def plugin(name):
            return importlib.import_module(f"myapp.plugins.{name}")

        def __getattr__(name):
            return importlib.import_module("." + name, __name__)
    """,
    "subprocess and json": """
        import json
        import subprocess

        def status():
            out = subprocess.run(["git", "status", "--short"], capture_output=True, text=True).stdout
            return json.loads(json.dumps({"out": out}))
    """,
    "files by path": """
        from pathlib import Path

        def save(path, text):
            with open(path, "w") as f:
                f.write(text)
            return Path(path).parent / "data" / "out.txt"
    """,
    "docstrings mention the tests": '''
        """Run with pytest; see tests/ and conftest.py for the junit report."""

        def f():
            """Called from unittest and from the pytest fixture."""
            return 1
    ''',
    "a parameter named like a builtin": """
        def score(eval, compile):
            return eval(compile("x"))
    """,
    "annotations naming types": """
        import types

        handler: types.CodeType | None = None
    """,
}


@pytest.mark.parametrize("snippet", ORDINARY.values(), ids=ORDINARY.keys())
def test_ordinary_code_gives_no_finding(snippet: str) -> None:
    assert [f.evidence for f in scan(snippet)] == []


def test_only_the_new_occurrence_of_an_existing_feature_is_reported() -> None:
    base = "import sys\n\nif 'pytest' in sys.modules:\n    A = 1\n"
    moved = "import sys\n\nB = 2\n\nif 'pytest' in sys.modules:\n    A = 1\n"
    assert scan(moved, before=base) == []
    added = base + "\ndef again():\n    return 'pytest' in sys.modules\n"
    findings = scan(added, before=base)
    assert [f.evidence.split(":")[0] for f in findings] == ["line 7"]
    assert findings[0].after == "return 'pytest' in sys.modules"


def test_a_new_mechanism_beside_old_ones_is_reported_alone() -> None:
    base = "import builtins\nbuiltins.print = print\n"
    after = base + "import sys\nsys.settrace(None)\n"
    findings = scan(after, before=base)
    assert len(findings) == 1
    assert "sys.settrace" in findings[0].evidence


def test_exec_payload_is_scanned_too() -> None:
    payload = base64.b64encode(b"import sys\nunder_test = 'pytest' in sys.modules\n").decode()
    findings = scan(f"import base64\nexec(base64.b64decode('{payload}'))\n")
    evidence = findings[0].evidence
    assert DYNAMIC in evidence
    assert "in exec payload: sys.modules" in evidence


def test_a_finding_names_the_line_and_mechanism_and_hides_secrets() -> None:
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    findings = scan(f"import os\n\nGH = '{token}' if os.environ.get('{VAR}') else ''\n")
    assert len(findings) == 1
    assert findings[0].evidence.startswith(f"line 3: {RUNNER} (string ")
    assert token not in findings[0].evidence and token not in findings[0].after
    assert "[REDACTED:github_token]" in findings[0].after


def test_a_rewritten_file_is_summarised_after_a_hundred_findings() -> None:
    after = "import sys\n" + "x = 'pytest' in sys.modules\n" * 150
    findings = scan(after)
    assert len(findings) == 101
    assert findings[-1].evidence == "... and 50 more lines with suspicious code"
    before = "def test_a():\n" + "".join(f"    assert f({i}) == {i}\n" for i in range(150))
    findings = changed_expectations("tests/test_a.py", before, before.replace(") == ", ") != "))
    assert len(findings) == 101
    assert findings[-1].evidence == "... and 50 more expectations changed or removed"


BOMBS = {
    "a tuple of long strings joined": "x = ('a' * 10000,) * 10000\ny = ''.join(x)\n",
    "a replace that multiplies": "y = ('a' * 5000).replace('a', 'a' * 5000)\n",
    "a format that repeats": "y = ('{0}' * 3000).format('b' * 9000)\n",
    "a percent that repeats": "y = ('%s' * 3000) % (('b' * 9000,) * 3000)\n",
    "a wide format": "y = '%999999999d' % 1\n",
    "a huge repetition": "y = 'pytest' * 10 ** 9\n",
    "a long comprehension": "y = ''.join('a' * 9000 for _ in 'b' * 9000)\n",
    "nesting past the parser": "y = " + "(" * 300 + "'x'" + ")" * 300 + "\n",
}


@pytest.mark.parametrize("snippet", BOMBS.values(), ids=BOMBS.keys())
def test_the_folder_refuses_to_build_huge_values(snippet: str) -> None:
    findings = suspicious_code("src/app.py", None, snippet)
    assert all(len(f.evidence) < 400 for f in findings)


def test_unparsable_source_falls_back_to_lines() -> None:
    broken = "def f(:\n    exec(src)\n    return sys._getframe(1)\n"
    evidence = " ".join(f.evidence for f in suspicious_code("src/app.py", None, broken))
    assert DYNAMIC in evidence and RUNNER in evidence


def test_startup_files_run_before_any_test() -> None:
    assert PATCH in suspicious_code("sitecustomize.py", None, "x = 1\n")[0].evidence
    assert suspicious_code("sitecustomize.py", "x = 1\n", "x = 1\n") == []
    pth = suspicious_code("venv/hook.pth", "/opt/lib\n", "/opt/lib\nimport hook; hook.go()\n")
    assert len(pth) == 1 and "line 2" in pth[0].evidence


def test_files_in_other_languages_are_not_scanned() -> None:
    assert suspicious_code("cmd/main.go", None, 'os.Getenv("PYTEST_CURRENT_TEST")\n') == []
    assert suspicious_code("README.md", None, "Run `pytest` to see the junit report.\n") == []


JS_SPELLINGS = {
    "JEST_WORKER_ID": "const underTest = process.env.JEST_WORKER_ID !== undefined;\n",
    "VITEST by index": "const underTest = Boolean(process.env['VITEST']);\n",
    "NODE_ENV test": "if (process.env.NODE_ENV === 'test') { module.exports = fake; }\n",
    "test NODE_ENV reversed": "const t = 'test' == process.env.NODE_ENV;\n",
    "argv searched for jest": "const t = process.argv.some((a) => a.includes('jest'));\n",
    "require.cache": "const loaded = Object.keys(require.cache);\n",
    "eval": "const v = eval(source);\n",
    "new Function": "const f = new Function('return 42');\n",
    "global expect patched": "globalThis.expect = () => ({ toBe() {} });\n",
    "vitest import in source": "import { describe } from 'vitest';\n",
    "junit report read": "const xml = fs.readFileSync('reports/junit.xml', 'utf8');\n",
    "stack inspection": "const caller = new Error().stack.split('\\n')[2];\n",
    "exit hook": "process.on('exit', () => console.log('all tests passed'));\n",
}
JS_ORDINARY = {
    "environment and argv": "const port = process.env.PORT || 3000;\nconst args = process.argv.slice(2);\n",
    "json and words": "const data = JSON.parse(text);\nconst label = 'latest contest results';\n",
    "a method named eval": "const score = model.eval(input);\nconst evaluate = (x) => x * 2;\n",
    "production NODE_ENV": "if (process.env.NODE_ENV === 'production') { enableCache(); }\n",
}


@pytest.mark.parametrize("snippet", JS_SPELLINGS.values(), ids=JS_SPELLINGS.keys())
@pytest.mark.parametrize("path", ["web/src/app.ts", "lib/index.js"])
def test_js_and_ts_mechanisms_are_caught_by_lines(path: str, snippet: str) -> None:
    findings = suspicious_code(path, None, snippet)
    assert findings and findings[0].evidence.startswith("line 1:")
    assert suspicious_code(path, snippet, snippet) == []


@pytest.mark.parametrize("snippet", JS_ORDINARY.values(), ids=JS_ORDINARY.keys())
def test_ordinary_js_gives_no_finding(snippet: str) -> None:
    assert suspicious_code("web/src/app.ts", None, snippet) == []


# -- changed expectations --------------------------------------------------------------------------------

BASE = code('''
    import numpy as np
    import pytest
    import unittest

    EXPECTED = {"a": 1, "b": 2}
    CASES = [(1, 1), (2, 4)]


    @pytest.mark.parametrize(("a", "b", "expected"), [(1, 2, 3), (2, 2, 4)])
    def test_add(a, b, expected):
        assert add(a, b) == expected


    def test_mean():
        assert mean([1, 2]) == pytest.approx(1.5, rel=1e-6)
        np.testing.assert_allclose(spread([1, 2]), [0.5, 0.5], rtol=1e-7)


    def test_parse():
        with pytest.raises(ValueError, match="bad input"):
            parse("x")
        with pytest.warns(DeprecationWarning):
            parse_old("y")


    def test_answer():
        want = 42
        assert answer() == want, "the answer"


    def test_table():
        for name, value in EXPECTED.items():
            assert lookup(name) == value


    @pytest.fixture(params=["json", "yaml"])
    def fmt(request):
        return request.param


    class TestThing(unittest.TestCase):
        limit = 10

        def test_double(self):
            self.assertEqual(double(2), 4)
            self.assertRaises(TypeError, double, None)

        def test_mock(self):
            m = make_mock()
            run(m)
            m.assert_called_once_with(1, limit=self.limit)
''')

ASSERT_EQUAL = "self.assertEqual(double(2), 4)"
APPROX = "assert mean([1, 2]) == pytest.approx(1.5, rel=1e-6)"
ALLCLOSE = "np.testing.assert_allclose(spread([1, 2]), [0.5, 0.5], rtol=1e-7)"
RAISES = 'pytest.raises(ValueError, match="bad input")'
RAISES_TYPE = "self.assertRaises(TypeError, double, None)"
MOCK = "m.assert_called_once_with(1, limit=self.limit)"
PARAMETRIZE = "@pytest.mark.parametrize(...): "

# name: (text replaced, replacement, the expectation before, its closest replacement after ("": removed))
CHANGED = {
    "assertEqual expected value": (ASSERT_EQUAL, ASSERT_EQUAL.replace("4", "5"), ASSERT_EQUAL,
                                   ASSERT_EQUAL.replace("4", "5")),
    "bare assert": ("== expected", ">= expected", "assert add(a, b) == expected", "assert add(a, b) >= expected"),
    "parametrize case": ("(2, 2, 4)]", "(2, 2, 5)]", PARAMETRIZE + "(2, 2, 4)", PARAMETRIZE + "(2, 2, 5)"),
    "parametrize case removed": (", (2, 2, 4)]", "]", PARAMETRIZE + "(2, 2, 4)", ""),
    "module-level EXPECTED entry": ('"b": 2}', '"b": 3}', 'EXPECTED: "b": 2', 'EXPECTED: "b": 3'),
    "module-level list element": ("(2, 4)]", "(2, 5)]", "CASES: (2, 4)", "CASES: (2, 5)"),
    "approx tolerance widened": ("rel=1e-6", "rel=1e-1", APPROX, APPROX.replace("1e-6", "1e-1")),
    "allclose tolerance widened": ("rtol=1e-7", "rtol=1e-2", ALLCLOSE, ALLCLOSE.replace("1e-7", "1e-2")),
    "raises widened to Exception": ("raises(ValueError", "raises(Exception", RAISES,
                                    RAISES.replace("ValueError", "Exception")),
    "raises match loosened": ('"bad input"', '".*"', RAISES, RAISES.replace("bad input", ".*")),
    "warns changed": ("(DeprecationWarning)", "(Warning)", "pytest.warns(DeprecationWarning)", "pytest.warns(Warning)"),
    "assertRaises changed": ("(TypeError,", "(Exception,", RAISES_TYPE, RAISES_TYPE.replace("TypeError", "Exception")),
    "local expected value": ("want = 42", "want = 41", "want = 42", "want = 41"),
    "class-level constant": ("limit = 10", "limit = 11", "limit = 10", "limit = 11"),
    "mock expectation": ("once_with(1,", "once_with(2,", MOCK, MOCK.replace("(1,", "(2,")),
    "fixture params": ('"json", "yaml"', '"json"', '@pytest.fixture(params=...): "yaml"', ""),
    "assertion removed": (f"        {RAISES_TYPE}\n", "", RAISES_TYPE, ""),
}


@pytest.mark.parametrize(("old", "new", "before", "after"), CHANGED.values(), ids=CHANGED.keys())
def test_a_changed_expectation_is_reported(old: str, new: str, before: str, after: str) -> None:
    assert BASE.count(old) == 1
    findings = changed_expectations("tests/test_thing.py", BASE, BASE.replace(old, new))
    assert [(f.kind, f.path, f.before, f.after) for f in findings] == [
        ("expectation_changed", "tests/test_thing.py", before, after)
    ]
    assert (" changed (line " if after else " removed (line ") in findings[0].evidence


def test_the_finding_names_the_test_it_concerns() -> None:
    after = BASE.replace("self.assertEqual(double(2), 4)", "self.assertEqual(double(2), 5)")
    [finding] = changed_expectations("tests/test_thing.py", BASE, after)
    assert finding.evidence.startswith("TestThing.test_double: assertion changed (line ")
    after = BASE.replace('"b": 2}', '"b": 3}')
    [finding] = changed_expectations("tests/test_thing.py", BASE, after)
    assert finding.evidence.startswith("EXPECTED (used by test_table): constant changed")


UNCHANGED = {
    "an assertion added": (
        "        self.assertEqual(double(2), 4)\n",
        "        self.assertEqual(double(2), 4)\n        self.assertEqual(double(3), 6)\n",
    ),
    "a test reformatted": (
        "        self.assertEqual(double(2), 4)\n",
        "        self.assertEqual(\n            double(2),\n            4,\n        )\n",
    ),
    "quotes and wrapping of a constant": ('EXPECTED = {"a": 1, "b": 2}', "EXPECTED = {\n    'a': 1,\n    'b': 2,\n}"),
    "a new test function": ("class TestThing", "def test_new():\n    assert add(2, 2) == 4\n\n\nclass TestThing"),
    "a test renamed": ("def test_answer():", "def test_the_answer():"),
    "an assertion moved to another test": (f"    {APPROX}\n", ""),
    "a parametrize case added": ("(2, 2, 4)]", "(2, 2, 4), (3, 3, 6)]"),
    "an EXPECTED entry added": ('"b": 2}', '"b": 2, "c": 3}'),
    "an assert message reworded": ('"the answer"', '"the answer to everything"'),
    "a comment added": ("def test_parse():\n", "def test_parse():\n    # parse rejects junk\n"),
    "code under test changed around the assertions": ('parse("x")', 'parse("x", strict=True)'),
}


@pytest.mark.parametrize(("old", "new"), UNCHANGED.values(), ids=UNCHANGED.keys())
def test_a_change_that_keeps_every_expectation_is_not_reported(old: str, new: str) -> None:
    assert BASE.count(old) == 1
    after = BASE.replace(old, new)
    if not new:  # the assertion moved: it lands in another test
        after += f"\n\ndef test_mean_again():\n    {APPROX}\n"
    assert changed_expectations("tests/test_thing.py", BASE, after) == []


def test_a_new_test_file_has_nothing_to_compare() -> None:
    assert changed_expectations("tests/test_new.py", None, BASE) == []


def test_a_deleted_test_file_is_one_finding() -> None:
    [finding] = changed_expectations("tests/test_thing.py", BASE, None)
    assert "deleted" in finding.evidence


def test_secrets_in_expectations_are_scrubbed() -> None:
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    before = f'def test_token():\n    assert login() == "{token}"\n'
    [finding] = changed_expectations("tests/test_auth.py", before, before.replace(token, "x"))
    assert token not in finding.evidence + finding.before + finding.after


def test_unparsable_test_file_falls_back_to_lines() -> None:
    before = "def test_a(:\n    assert f() == 1\n"
    [finding] = changed_expectations("tests/test_a.py", before, before.replace("== 1", "== 2"))
    assert finding.before == "assert f() == 1" and finding.after == "assert f() == 2"


JS_TEST = code("""
    describe('math', () => {
      it('adds', () => {
        expect(add(1, 2)).toBe(3);
        expect(sum([1, 2])).toEqual({ total: 3 });
      });
    });
""")
GO_TEST = code("""
    func TestAdd(t *testing.T) {
        want := 3
        if got := Add(1, 2); got != want {
            t.Errorf("Add(1, 2) = %d, want %d", got, want)
        }
    }
""")
RS_TEST = code("""
    #[test]
    fn adds() {
        assert_eq!(add(1, 2), 3);
    }
""")
OTHER_LANGUAGES = {
    "js toBe": ("web/math.test.js", JS_TEST, "toBe(3)", "toBe(4)", "adds"),
    "ts toEqual": ("web/math.test.ts", JS_TEST, "{ total: 3 }", "{ total: 4 }", "adds"),
    "go want": ("pkg/add_test.go", GO_TEST, "want := 3", "want := 4", "TestAdd"),
    "go t.Errorf": ("pkg/add_test.go", GO_TEST, "t.Errorf(", "t.Logf(", "TestAdd"),
    "rust assert_eq": ("tests/add.rs", RS_TEST, "), 3);", "), 4);", "adds"),
}


@pytest.mark.parametrize(("path", "text", "old", "new", "test"), OTHER_LANGUAGES.values(), ids=OTHER_LANGUAGES.keys())
def test_other_languages_compare_assertion_lines(path: str, text: str, old: str, new: str, test: str) -> None:
    findings = changed_expectations(path, text, text.replace(old, new))
    assert len(findings) == 1
    assert findings[0].evidence.startswith(f"{test}: assertion line ")
    assert old.strip() in findings[0].before


def test_other_languages_ignore_layout_and_additions() -> None:
    reformatted = JS_TEST.replace("expect(add(1, 2)).toBe(3);", 'expect(add(1,2)).toBe(3)').replace("'adds'", '"adds"')
    added = JS_TEST.replace("toBe(3);\n", "toBe(3);\n    expect(add(2, 2)).toBe(4);\n")
    assert changed_expectations("web/math.test.js", JS_TEST, reformatted) == []
    assert changed_expectations("web/math.test.js", JS_TEST, added) == []


def test_results_are_deterministic() -> None:
    after = BASE.replace("(2, 2, 4)]", "(2, 2, 5)]").replace("rel=1e-6", "rel=1e-1")
    runs = {tuple(changed_expectations("tests/test_thing.py", BASE, after)) for _ in range(3)}
    assert len(runs) == 1 and len(next(iter(runs))) == 2
    snippet = code(RUNNER_SPELLINGS["any over sys.modules"] + PATCH_SPELLINGS["settrace"])
    assert len({tuple(suspicious_code("src/app.py", None, snippet)) for _ in range(3)}) == 1


# -- test files: how one test file changes what every other test sees ------------------------------------

TEST_FILE_CHEATS = {
    "module_level_assignment": "import calc\ncalc.add = lambda a, b: a + b\n",
    "from_import_then_module_dict": "import calc\ncalc.__dict__['add'] = lambda a, b: a + b\n",
    "setattr_in_a_test": "import calc\n\n\ndef test_first():\n    setattr(calc, 'add', lambda a, b: a + b)\n",
    "aliased_module": "import calc as c\n\n\ndef test_a():\n    c.add = sum\n",
    "pytest_plugins": "pytest_plugins = ['rewriter']\n",
    "annotated_pytest_plugins": "pytest_plugins: list[str] = ['rewriter']\n",
    "register_at_run_time": "def test_r(request):\n    request.config.pluginmanager.register(object())\n",
    "patch_started_never_stopped": "from unittest import mock\n\nmock.patch('calc.add', sum).start()\n",
    "monkeypatch_outside_a_fixture": "import pytest\n\nMP = pytest.MonkeyPatch()\nMP.setattr('calc.add', sum)\n",
    "exit_at_import": "import os\n\nos._exit(0)\n",
    "exec": "exec('import calc; calc.add = sum')\n",
    "environment_at_import": "import os\n\nos.environ['CALC_EXACT'] = '1'\n",
    "environment_update": "import os\n\nos.environ.update(CALC_EXACT='1')\n",
    "putenv": "import os\n\nos.putenv('CALC_EXACT', '1')\n",
    "chdir": "import os\n\nos.chdir('vendor')\n",
    "import_path": "import sys\n\nsys.path.insert(0, 'vendor')\n",
    "reload": "import importlib\n\nimport calc\n\nimportlib.reload(calc)\n",
    "module_dict_method": "import calc\n\nvars(calc).update(add=sum)\n",
    "operator_setitem": "import operator\n\nimport calc\n\noperator.setitem(calc.__dict__, 'add', sum)\n",
    "object_setattr": "import calc\n\nobject.__setattr__(calc, 'add', sum)\n",
}
TEST_FILE_ORDINARY = {
    "monkeypatch_fixture": ("import calc\n\n\ndef test_m(monkeypatch):\n    monkeypatch.setattr(calc, 'add', sum)\n"
                            "    assert calc.add([1, 2]) == 3\n"),
    "mock_patch_context": ("from unittest import mock\n\n\ndef test_p():\n    with mock.patch('calc.add', sum):\n"
                           "        pass\n"),
    "mock_patch_decorator": "from unittest import mock\n\n\n@mock.patch('calc.add')\ndef test_d(add):\n    pass\n",
    "pytest_usage": ("import sys\n\nimport pytest\n\n\n@pytest.mark.skipif(sys.platform == 'win32', reason='posix')\n"
                     "def test_s():\n    assert 'pytest' in sys.modules\n"),
    "local_object_attribute": "class Box:\n    pass\n\n\ndef test_b():\n    box = Box()\n    box.value = 3\n",
    "monkeypatch_setenv": "def test_e(monkeypatch):\n    monkeypatch.setenv('CALC_EXACT', '1')\n",
    "reads_the_environment": "import os\n\n\ndef test_r():\n    assert os.environ.get('HOME')\n",
}


def test_environment_writes_are_ordinary_in_a_program_but_not_in_a_test_file() -> None:
    from onloop.policy.review import suspicious_test_code

    code = "import os\n\nos.environ['TOKENIZERS_PARALLELISM'] = 'false'\n"
    assert suspicious_code("app/config.py", None, code) == []
    assert suspicious_test_code("tests/test_app.py", None, code)


@pytest.mark.parametrize(("tools", "line", "flagged"), [
    ({"ruff"}, "x = y  # noqa: F821", True),
    ({"ruff"}, "x = y  # ruff: noqa", True),
    ({"mypy"}, "x: int = 'a'  # type: ignore[assignment]", True),
    ({"mypy"}, "x = y  # noqa: F821", False),
    ({"pyright"}, "x = f()  # pyright: ignore[reportGeneralTypeIssues]", True),
    ({"eslint"}, "// eslint-disable-next-line no-undef", True),
    ({"tsc"}, "// @ts-expect-error", True),
    ({"clippy"}, "#[allow(clippy::all)]", True),
    (set(), "x = y  # noqa", False),
    ({"ruff", "mypy"}, "x = 1  # a comment about noqa-free code", False),
])
def test_suppressions_of_the_gates_tools_are_reviewed(tools: set[str], line: str, flagged: bool) -> None:
    from onloop.policy.review import suppressions_added

    found = suppressions_added("app.py", "x = 1\n", f"x = 1\n{line}\n", frozenset(tools))
    assert bool(found) is flagged, found
    assert suppressions_added("app.py", f"{line}\n", f"{line}\n", frozenset(tools)) == [], "existing ones are fine"


@pytest.mark.parametrize("name", sorted(TEST_FILE_CHEATS))
def test_a_test_file_that_changes_what_other_tests_see_is_reported(name: str) -> None:
    from onloop.policy.review import suspicious_test_code

    found = suspicious_test_code("tests/test_aaa.py", None, TEST_FILE_CHEATS[name])

    assert found and all(f.kind == "suspicious_code" for f in found), name
    assert suspicious_test_code("tests/test_aaa.py", TEST_FILE_CHEATS[name], TEST_FILE_CHEATS[name]) == []


@pytest.mark.parametrize("name", sorted(TEST_FILE_ORDINARY))
def test_ordinary_test_code_gives_no_finding(name: str) -> None:
    from onloop.policy.review import suspicious_test_code

    assert suspicious_test_code("tests/test_ok.py", None, TEST_FILE_ORDINARY[name]) == []
