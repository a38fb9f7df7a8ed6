"""The structural tools on real files in a real git repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onloop.agent import files
from onloop.agent.output import truncate
from onloop.agent.paths import PathRefused, resolve_inside
from onloop.agent.plan import PlanError, update_plan


@pytest.fixture
def repo(make_repo) -> Path:  # type: ignore[no-untyped-def]
    return make_repo({"src/app.py": "def add(a, b):\n    return a - b\n", "README.md": "# demo\n",
                      "IMPLEMENTATION_PLAN.md": "# Plan\n\n- [ ] fix add\n- [ ] write docs\n- [x] set up repo\n"})


@pytest.mark.parametrize("raw", ["/etc/passwd", "../outside.txt", "src/../../x", "~/secrets", "", ".git/config",
                                 ".git/hooks/pre-commit"])
def test_escapes_are_refused(repo: Path, raw: str) -> None:
    with pytest.raises(PathRefused):
        resolve_inside(repo, raw)


def test_symlink_escape_is_refused_but_inner_symlink_allowed(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "leak").symlink_to(outside)
    (repo / "alias.py").symlink_to(repo / "src" / "app.py")
    with pytest.raises(PathRefused, match="symlink") as caught:
        resolve_inside(repo, "leak/secret.txt")
    assert caught.value.guardrail == "path_escape"
    assert resolve_inside(repo, "alias.py") == Path(os.path.realpath(repo / "src" / "app.py"))


def test_read_list_search(repo: Path) -> None:
    assert files.read_file(repo, "src/app.py", start_line=2) == "    return a - b\n"
    assert files.list_dir(repo) == "IMPLEMENTATION_PLAN.md\nREADME.md\nsrc/"
    assert files.search(repo, r"return a [-+] b") == "src/app.py:2:     return a - b"
    assert files.search(repo, "nothing-like-this") == "no matches"
    assert files.search(repo, "demo", glob="*.py") == "no matches"
    with pytest.raises(files.ToolFailure, match="invalid regular expression"):
        files.search(repo, "(")


def test_apply_edits_all_or_nothing(repo: Path) -> None:
    with pytest.raises(files.ToolFailure, match="edit 2: search text not found"):
        files.apply_edits(repo, "src/app.py", [("a - b", "a + b"), ("missing", "x")])
    assert "a - b" in (repo / "src/app.py").read_text()  # the first edit was not applied either
    (repo / "twice.txt").write_text("x\nx\n")
    with pytest.raises(files.ToolFailure, match="found 2 times"):
        files.apply_edits(repo, "twice.txt", [("x", "y")])
    assert files.apply_edits(repo, "src/app.py", [("a - b", "a + b")]) == "applied 1 edit(s) to src/app.py"
    assert (repo / "src/app.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_write_creates_parents(repo: Path) -> None:
    files.write_file(repo, "docs/new/guide.md", "hello")
    assert (repo / "docs/new/guide.md").read_text() == "hello"


def test_update_plan(repo: Path) -> None:
    plan = repo / "IMPLEMENTATION_PLAN.md"
    update_plan(plan, "check", "fix add")
    update_plan(plan, "uncheck", "set up")
    update_plan(plan, "add", "release")
    assert plan.read_text() == "# Plan\n\n- [x] fix add\n- [ ] write docs\n- [ ] set up repo\n- [ ] release\n"
    with pytest.raises(PlanError, match="no plan item matches"):
        update_plan(plan, "check", "deploy")
    update_plan(plan, "add", "write docs twice")
    with pytest.raises(PlanError, match="matches 2 items"):
        update_plan(plan, "check", "docs")


def test_truncate_keeps_head_and_tail(tmp_path: Path) -> None:
    text = "HEAD" + "x" * 10_000 + "TAIL"
    cut = truncate(text, 1000, tmp_path / "full.txt")
    assert cut.text.startswith("HEAD") and cut.text.endswith("TAIL")
    assert cut.omitted_bytes == len(text) - 1000
    assert f"{cut.omitted_bytes} bytes omitted" in cut.text and str(tmp_path / "full.txt") in cut.text
    assert (tmp_path / "full.txt").read_text() == text
    assert truncate("short", 1000, tmp_path / "none.txt").text == "short"
    assert not (tmp_path / "none.txt").exists()
