"""Review triggers: changes that may be legitimate but that a human must see before a run ends "done".

The diff audit (`audit.py`) blocks what is wrong on its face: deleted tests, skip markers, removed or
constant assertions. Two subtler ways of passing the gates are not wrong on their face, so they do not
roll an iteration back; instead a finding here sends the run to human review:

- `changed_expectations`: an existing test now expects something else. Changing an expected value
  is a change of the spec, not of the code, and only a human may change the spec. Expectations are
  compared as a multiset of normalised AST dumps (`ast.dump` ignores layout), so adding assertions,
  reformatting, renaming a test or moving an assertion never triggers; a parametrize list or an
  `EXPECTED` dict is split into one expectation per case or entry, so adding a case never triggers.
- `suspicious_test_code`: in a test file, new or changed, the ways one test file changes what every
  other test sees: patching the code under test or the interpreter (at import or in a test), loading or
  registering pytest plugins, ending the process, dynamic code, raw fd writes;
- `suppressions_added`: comments that silence a lint or type gate's tool (`# noqa`, `# type: ignore`,
  `eslint-disable`, `@ts-ignore`), for the tools the run's gates run;
- `suspicious_code`: code outside the tests that inspects the test runner, imports or patches the test
  framework or the interpreter, runs dynamic code, or names test reports and test files. Features are
  counted in the base text and in the new text and only an increase counts, so code that was already
  there never triggers. Python goes through the AST with constant folding (concatenation, `%`,
  `.format`, f-strings, `join`, `chr`, `bytes.fromhex`, base64, rot13, slicing), so that a mechanism is
  caught whatever its spelling; JS/TS and unparsable Python go through regexes over the lines.

Both detectors are deterministic and never raise on odd input: text that cannot be parsed falls back
to lines. Every excerpt goes through `secrets.scrub` before it leaves this package.

The package, one concept per module (each imports only the ones below it, so there is no cycle):
- `_finding`: `ReviewFinding` and the one way excerpts are scrubbed and shortened;
- `_source`: source-text and AST helpers both detectors share (parsing, segments, assignments);
- `expectations`: `changed_expectations`;
- `features`: what `suspicious_code` counts, and the strings that are features;
- `folding`: the constant folder;
- `scanner`: the Python scanner, over the AST with the folder;
- `suspicious`: `suspicious_code`, with the line fallback for JS/TS and unparsable Python;
- `suppressions`: `suppressions_added`.

What the detectors cannot see (the list the README quotes):
- expectations that live outside the test file or are computed at run time (a data file, a fixture in
  conftest.py, a helper in another module);
- an expectation kept verbatim but made unreachable (under `if False:`, after a `return`, moved into a
  helper nobody calls): it still counts as present;
- changed test inputs that are not literal expected values used by an assertion (`f(3)` -> `f(4)`);
- in JS/TS/Go/Rust tests, only lines with an assertion word are compared (table rows without one are
  invisible), and whitespace and quote style inside string literals are ignored;
- strings built from values the folder cannot compute (a loop that accumulates, a file, the network,
  the environment, a function's result, `str.translate`, `re.sub`), and `getattr`/`setattr` with a
  computed name;
- a module reached through a container or an object (`[sys][0].modules`, `operator.attrgetter`) or
  through a name bound more than once;
- import-time effects reached indirectly (a function that calls `sys.exit` or `signal.signal`, called
  at import time): the import-time check is lexical;
- what a shell command does (`os.system("kill $PPID")`): only the strings in it are checked;
- anything in C extensions, shell scripts, config files, or source languages other than Python and
  JS/TS; and JS/TS only by regexes over lines (no folding; comments are not stripped).
False positives to expect (only new occurrences count, so existing ones stay silent): code that
legitimately mentions "onloop" (onloop's own repository) or the test tooling (pytest plugins, CI
helpers), plugin loaders importing fully computed module names, ctypes, replacing `sys.stdout`,
template engines that compile code.
"""

from onloop.policy.review._finding import ReviewFinding
from onloop.policy.review.expectations import changed_expectations
from onloop.policy.review.suppressions import suppressions_added
from onloop.policy.review.suspicious import suspicious_code, suspicious_test_code

__all__ = ["ReviewFinding", "changed_expectations", "suppressions_added", "suspicious_code", "suspicious_test_code"]
