"""Policy validation: contradictions are refused at load, with the key named."""

from __future__ import annotations

import pytest

from onloop.config import parse_config
from onloop.errors import ConfigError
from onloop.policy.model import Policy, glob_match


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ('[policy]\nwritable = [".github/workflows"]\n', "policy.writable", "also protected by '.github/**'"),
        ('[policy]\nprotected = ["docs/**"]\nwritable = ["docs/build"]\n', "policy.writable", "also protected"),
        ('[policy]\nwritable = ["app/migrations"]\n', "policy.writable", "also protected"),
        ('[policy]\nwritable = ["../elsewhere"]\n', "policy.writable", "without '..'"),
        ('[policy]\nwritable = ["/etc"]\n', "policy.writable", "relative to the worktree"),
        ('[policy]\nnetwork = "some"\n', "policy.network", "none, model-only, full"),
        ('[policy]\nsandbox = "docker"\n', "policy.sandbox", "bwrap, none"),
        ('[policy.actions.test]\nargv = ["/usr/bin/pytest", "-q"]\n', "policy.actions.test.argv",
         "outside the worktree"),
        ('[policy.actions.test]\nargv = ["../bin/pytest"]\n', "policy.actions.test.argv", "outside the worktree"),
        ('[policy.actions.test]\nargv = []\n', "policy.actions.test.argv", "non-empty"),
        ('[policy]\nhidden = ["relative/dir"]\n', "policy.hidden", "absolute host path"),
        ('[policy]\nreadable = ["/opt/../root"]\n', "policy.readable", "without '..'"),
        ('[policy]\nnetwrok = "none"\n', "policy.netwrok", "unknown key"),
    ],
)
def test_contradictions_refused_with_key(toml: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(toml)
    assert info.value.key == key
    assert words in str(info.value)
    assert info.value.line is not None


def test_valid_policy_loads() -> None:
    config = parse_config(
        '[policy]\nwritable = ["build"]\nhidden = ["/srv/secrets"]\nreadable = ["/root/.pyenv"]\n'
        '[policy.actions.test]\nargv = [".venv/bin/python", "-m", "pytest"]\n'
        '[policy.actions.lint]\nargv = ["ruff", "check"]\n'
    )
    assert config.policy.writable == ["build"]
    assert config.policy.actions["test"].argv[0] == ".venv/bin/python"


def test_every_policy_key_is_documented() -> None:
    for name, field in Policy.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/*.lock", "Cargo.lock", True),
        ("**/*.lock", "a/b/c.lock", True),
        ("*.lock", "a/c.lock", False),
        (".github/**", ".github/workflows/ci.yml", True),
        (".github/**", ".githubx/ci.yml", False),
        ("**/migrations/**", "app/migrations/0001.py", True),
        ("**/migrations/**", "migrations/0001.py", True),
        ("**/migrations/**", "app/migrations_old/0001.py", False),
        ("src/**/test_*.py", "src/test_a.py", True),
        ("src/**/test_*.py", "src/x/y/test_a.py", True),
        ("src/*/test_*.py", "src/x/y/test_a.py", False),
        ("onloop.toml", "onloop.toml", True),
        ("onloop.toml", "sub/onloop.toml", False),
        ("docs/[ab].md", "docs/a.md", True),
        ("a/**/b/**/c", "a/x/b/y/z/c", True),
    ],
)
def test_glob_match(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected
