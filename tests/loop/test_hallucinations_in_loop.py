"""Made-up dependencies, imports and claimed edits are caught by the loop, against a local fake index."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

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


def test_unverifiable_registry_is_a_warning_not_a_pass(make_repo, tmp_path: Path) -> None:
    add = Step(message="added a dependency", plan_check=("first",),
               edits=(Edit("requirements.txt", write="requests\nsomething-new\n"),))
    repo = workspace(make_repo, tmp_path, Scenario((add, feature("two", "second"))),
                     files={"requirements.txt": "requests\n"})
    db = Database.open_default()

    outcome = start_run(repo, db=db)

    warnings = [e["message"] for e in store.events_after(db, outcome.run_id) if e["kind"] == "warning"]
    assert any("could not verify dependency something-new" in w for w in warnings)
    assert not [i for i in store.incidents(db, outcome.run_id) if i["kind"] == "hallucination"]
