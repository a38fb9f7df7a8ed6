"""Made-up dependencies, imports and claimed edits are caught by the loop, against a local fake index."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onloop.gates.registry import RegistryStore, sync
from onloop.loop.api import start_run
from onloop.loop.stop import StopReason
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.testing import Edit, Scenario, Step
from tests.loop.helpers import receipts, workspace
from tests.loop.test_run_e2e import feature

KNOWN = {"/pypi/requests/json"}


class _Index(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path in KNOWN
        self.send_response(200 if found else 404)
        self.end_headers()
        self.wfile.write(b'{"info": {}}' if found else b"{}")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def index() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_made_up_dependency_import_and_claimed_edit(make_repo, tmp_path: Path, index: str) -> None:
    invent = Step(message="Added retries. Changed `src/retry.py` and updated calc.py.", plan_check=("first",),
                  claim_done=False,
                  edits=(Edit("requirements.txt", write="requests\nrequestz-retry-magic\n"),
                         Edit("calc.py", append="\nimport magic_cache_lib  # noqa\n")))
    clean = Step(message="Removed the made-up package.", edits=(
        Edit("requirements.txt", write="requests\n"),
        Edit("calc.py", replace=("\nimport magic_cache_lib  # noqa\n", "\n"))))
    scenario = Scenario((invent, clean, feature("two", "second")))
    repo = workspace(make_repo, tmp_path, scenario, files={"requirements.txt": "requests\n"},
                     extra=f'[hallucination]\nregistries = {{ pypi = "{index}" }}\n')
    db = Database.open_default()
    # The operator synced the whole PyPI name list: offline (the default), a name missing from it is made
    # up, and no name the agent chose is ever sent to a registry.
    names = tmp_path / "pypi-names.txt"
    names.write_text("requests\nurllib3\n")
    sync(RegistryStore(), "pypi", from_file=names)

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE
    incidents = [i for i in store.incidents(db, outcome.run_id) if i["kind"] == "hallucination"]
    assert {i["iteration"] for i in incidents} == {1}
    summaries = " | ".join(i["summary"] for i in incidents)
    assert "dependency requestz-retry-magic" in summaries
    assert "import magic_cache_lib" in summaries
    assert "claimed_path src/retry.py" in summaries
    first = receipts(db, outcome.run_id)[0]
    assert "made-up dependency 'requestz-retry-magic'" in first["done_blockers"]
    assert "Made up (dependency)" in first["feedback"]


def test_an_unverifiable_dependency_blocks_done_while_the_branch_has_it(make_repo, tmp_path: Path) -> None:
    """Offline (the default), nobody knows `something-new`: never a silent pass, and never a lookup
    from the host with a name the agent chose. It blocks done in every iteration until it is gone."""
    add = Step(message="added a dependency", plan_check=("first",),
               edits=(Edit("requirements.txt", write="requests\nsomething-new\n"),))
    other = Step(**{**feature("two", "second").__dict__, "claim_done": True})
    drop = Step(message="dropped it", claim_done=True, edits=(Edit("requirements.txt", write="requests\n"),))
    repo = workspace(make_repo, tmp_path, Scenario((add, other, drop)), files={"requirements.txt": "requests\n"})
    db = Database.open_default()

    outcome = start_run(repo, db=db)

    assert outcome.reason is StopReason.DONE and outcome.iterations == 3
    warnings = [e["message"] for e in store.events_after(db, outcome.run_id) if e["kind"] == "warning"]
    assert any("could not verify dependency something-new" in w for w in warnings)
    first, second, _ = receipts(db, outcome.run_id)
    for receipt in (first, second):  # iteration 2 did not touch requirements.txt: still blocked
        assert any("unverifiable dependency 'something-new'" in b for b in receipt["done_blockers"]), receipt
    assert not [i for i in store.incidents(db, outcome.run_id) if i["kind"] == "hallucination"]
