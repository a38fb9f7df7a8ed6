"""The effective policy, where each value came from, and whether this machine can enforce it.

`onloop policy show` and `onloop policy check` are thin wrappers around `load_policy`,
`policy_rows` and `check_policy`; the loop calls `check_policy` too before a run starts, so the
operator sees the same verdict from both. Contradictions inside the policy never get this far: the
pydantic model refuses them at load with the key named (exit code 2).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from onloop.config import CONFIG_FILE, load_config
from onloop.errors import SandboxUnavailable
from onloop.policy.model import Policy
from onloop.policy.sandbox import PIDS_CGROUP_ROOT, BwrapSandbox

Source = Literal["default", "onloop.toml"]
Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    policy: Policy
    path: Path | None  # None: no onloop.toml, the defaults apply
    explicit: frozenset[str]  # dotted keys set in the file, e.g. "network", "limits.cpu"

    def source(self, key: str) -> Source:
        head = key.split(".", 1)[0]
        if key in self.explicit or (head == "actions" and head in self.explicit):
            return "onloop.toml"
        return "default"


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    value: str
    source: Source


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str


def load_policy(config_path: Path | None = None) -> LoadedPolicy:
    """The policy of `config_path` (default ./onloop.toml); defaults when the file does not exist."""
    path = config_path or Path.cwd() / CONFIG_FILE
    if not path.exists() and config_path is None:
        return LoadedPolicy(Policy(), None, frozenset())
    config = load_config(path)  # raises ConfigError naming the key (exit code 2)
    raw = tomllib.loads(path.read_text(encoding="utf-8")).get("policy", {})
    return LoadedPolicy(config.policy, path, frozenset(_dotted_keys(raw)))


def _dotted_keys(table: dict[str, object], prefix: str = "") -> list[str]:
    keys = []
    for name, value in table.items():
        key = f"{prefix}{name}"
        keys.append(key)
        if isinstance(value, dict) and name != "actions":
            keys += _dotted_keys(value, key + ".")
    return keys


def policy_rows(loaded: LoadedPolicy) -> list[Row]:
    """One row per effective value, in the order an operator reads a policy."""
    policy = loaded.policy
    rows = [Row(k, _fmt(getattr(policy, k)), loaded.source(k)) for k in ("sandbox", "network")]
    for key in ("writable", "protected", "env_allow", "hidden", "readable"):
        rows.append(Row(key, _fmt(getattr(policy, key)), loaded.source(key)))
    for name, action in policy.actions.items():
        detail = f"{shlex.join(action.argv)}  (timeout {action.timeout:g}s, network {action.network})"
        rows.append(Row(f"actions.{name}", detail, loaded.source("actions")))
    if not policy.actions:
        rows.append(Row("actions", "(none: the agent may run no command)", loaded.source("actions")))
    for key, value in policy.limits.model_dump().items():
        rows.append(Row(f"limits.{key}", _fmt(value), loaded.source(f"limits.{key}")))
    rows.append(Row("max_breaches", str(policy.max_breaches), loaded.source("max_breaches")))
    return rows


def _fmt(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_policy(policy: Policy, worktree: Path | None = None) -> list[CheckResult]:
    """Can this machine enforce `policy`? Failures mean a run would stop as blocked."""
    if policy.sandbox == "none":
        return [CheckResult("sandbox", "warn", "policy.sandbox = \"none\": agents and gates run UNSANDBOXED "
                            "on this host; every run records it")]
    results = [_check_bwrap(policy, worktree or Path.cwd())]
    if policy.network == "model-only":
        socat = shutil.which("socat")
        results.append(CheckResult("socat", "ok" if socat else "fail",
                                   socat or "not found; model-only network needs it: apt-get install socat"))
    prlimit = shutil.which("prlimit")
    results.append(CheckResult("prlimit", "ok" if prlimit else "warn",
                               prlimit or "not found; limits are applied by a slower Python wrapper"))
    results.append(_check_fork_limit())
    return results


def _check_bwrap(policy: Policy, worktree: Path) -> CheckResult:
    box = BwrapSandbox(policy.model_copy(update={"network": "none"}), worktree, None)
    try:
        box.check()
    except SandboxUnavailable as exc:
        return CheckResult("bwrap", "fail", str(exc))
    return CheckResult("bwrap", "ok", f"{box.bwrap}: namespaces usable (user, pid, net, mount)")


def _check_fork_limit() -> CheckResult:
    if os.geteuid() != 0:
        return CheckResult("process limit", "ok", "RLIMIT_NPROC applies (not running as root)")
    if (PIDS_CGROUP_ROOT / "cgroup.procs").exists() and os.access(PIDS_CGROUP_ROOT, os.W_OK):
        return CheckResult("process limit", "ok", f"running as root: pids cgroup at {PIDS_CGROUP_ROOT}")
    return CheckResult("process limit", "warn", "running as root without a writable pids cgroup: the kernel "
                       "ignores RLIMIT_NPROC for root, so only the wall-clock timeout bounds a fork bomb; "
                       "run onloop as an unprivileged user")


def exit_code_for(results: list[CheckResult]) -> int:
    """0 when every check passed or only warned; 16 (blocked) when the sandbox cannot work."""
    return SandboxUnavailable.exit_code if any(r.status == "fail" for r in results) else 0
