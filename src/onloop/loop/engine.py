"""The run: baseline, then iterations until a stop rule fires. The state machine, not the details.

    created ──baseline──► running ──iteration*──► stopped(reason, exit code)
                             ▲  │
                             │  └─ pause (steering) ─► paused ─ resume ─┘
    stopped(interrupted) or a crashed process ──`--resume`──► running (same branch, counters, plan)

One iteration's steps live in `onloop.loop.iteration`; the stop rules in `onloop.loop.rules`; this
module wires them, persists counters, and turns every way of stopping (a rule, an operator's stop,
Ctrl-C, SIGTERM, a guardrail refusal) into a recorded stop reason with its exit code.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from onloop.backends import AgentBackend, BackendSpec, create_backend
from onloop.clock import Clock, utc_iso
from onloop.config import Config, RunConfig
from onloop.errors import ConfigError, GuardrailError, OnloopError, StopRun
from onloop.gates.runner import GateRun
from onloop.loop import rules
from onloop.loop.baseline import load_baseline, refuse_broken, take_baseline
from onloop.loop.events import EventLog, Reporter
from onloop.loop.gating import Gates, gate_readable, test_files
from onloop.loop.iteration import IterationContext, run_iteration
from onloop.loop.plan import Plan, parse_plan
from onloop.loop.setup import RunPaths, run_paths
from onloop.loop.state import RunState
from onloop.loop.steering import apply_steering
from onloop.loop.stop import StopReason
from onloop.models.base import ChatModel
from onloop.models.metered import Meter, ModelCall
from onloop.process import Sandbox
from onloop.store import runs as store
from onloop.store.db import Database
from onloop.store.runs import RunRow
from onloop.workspace import show_file


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    reason: StopReason
    detail: str
    iterations: int

    @property
    def exit_code(self) -> int:
        return self.reason.exit_code


IDLE_TTL_SECONDS = 1800  # a memory session idle this long is consolidated by the next run that starts


class Interrupted(BaseException):
    """Raised from a SIGTERM handler so the run stops as `interrupted`, like Ctrl-C."""


class Engine:
    def __init__(self, db: Database, row: RunRow, config: Config, clock: Clock, reporter: Reporter,
                 sandbox_factory: SandboxFactory) -> None:
        self.db = db
        self.row = row
        self.config = config
        self.caps: RunConfig = config.run
        self.clock = clock
        self.paths: RunPaths = run_paths(row.id)
        self.events = EventLog(db, row.id, clock, reporter)
        self.state = RunState.from_row(row)
        self.sandbox_factory = sandbox_factory
        self.backend = self._backend(config.run.backend)
        self.fallback = self._backend(config.run.fallback_backend) if config.run.fallback_backend else None
        # onloop's own model calls (judges, memory consolidation): from the run's budget and time, booked
        # into its counters (`self.state` is read at each call: a resume replaces it).
        self.meter = Meter(clock, budget_left=lambda: self.caps.budget_usd - self.state.spend_usd,
                           time_left=lambda: self.caps.max_time - self.state.elapsed_seconds,
                           max_wait=self.caps.rate_limit_max_wait, on_call=self._book_model_call)

    def _book_model_call(self, call: ModelCall) -> None:
        """A model call of onloop's own, added to the run's counters at once, and to the stored row by
        its own amounts (the row has not seen the iteration's agent spend yet: recovery after a crash
        adds that from the transcript, so the row must not hold it twice)."""
        cost = call.cost.as_decimal()
        self.state.spend_usd += cost
        self.state.tokens_in += call.usage.input_tokens
        self.state.tokens_out += call.usage.output_tokens
        row = store.get_run(self.db, self.row.id)
        store.update_run(self.db, self.row.id, {"spend_usd": row.spend_usd + cost,
                                                "tokens_in": row.tokens_in + call.usage.input_tokens,
                                                "tokens_out": row.tokens_out + call.usage.output_tokens})
        self.events.emit("model_call", f"{call.purpose}: {call.usage.input_tokens}+{call.usage.output_tokens} "
                         f"tokens, ${cost:.4f}" + (f" ({call.error})" if call.error else ""), **call.to_dict())

    def _backend(self, name: str) -> AgentBackend:
        return make_backend(self.config, name, Path(self.row.workspace))

    def execute(self) -> RunOutcome:
        started = self.clock.monotonic()
        elapsed_at_start = self.state.elapsed_seconds
        sandbox: Sandbox | None = None
        gates: Gates | None = None
        try:
            with _sigterm_interrupts():
                store.update_run(self.db, self.row.id, {"status": "running", "pid": os.getpid()})
                sandbox = self.sandbox_factory(self.config, self.row, self.paths)
                gates = self._gates()
                self._announce(sandbox)
                self._consolidate_idle()
                baseline = self._baseline(gates)
                reason, detail = self._iterate(sandbox, gates, baseline, started, elapsed_at_start)
        except StopRun as stop:
            reason, detail = stop.reason, stop.detail
        except GuardrailError as exc:
            reason, detail = StopReason.BLOCKED, str(exc)
        except OnloopError as exc:
            # A failure of onloop itself (git, store): recorded as interrupted (resumable), and the
            # process exits with that stop's code, so the stored status and the exit code agree.
            reason, detail = StopReason.INTERRUPTED, f"stopped by an error of onloop: {exc}"
            self._mark_interrupted()
        except (KeyboardInterrupt, Interrupted):
            reason, detail = StopReason.INTERRUPTED, "stopped by a signal; resume with `onloop run --resume`"
            self._mark_interrupted()
        finally:
            for resource in (sandbox, gates):
                close = getattr(resource, "close", None)
                if close is not None:
                    close()  # stops the model bridge and releases the sandboxes' cgroups
        self.state.elapsed_seconds = elapsed_at_start + (self.clock.monotonic() - started)
        self._consolidate_memory()
        return self._stop(reason, detail)

    def _memory_model(self) -> ChatModel | None:
        from onloop.models import create_model

        settings = self.config.memory.model
        if not settings:
            return None
        return self.meter.model(create_model(settings, key="memory.model.provider"), "memory consolidation")

    def _consolidate_idle(self) -> None:
        """Sessions of other runs that went idle (crashed, killed, abandoned) are consolidated too."""
        if self.config.memory.enabled:
            from onloop.memory import consolidate_idle

            consolidate_idle(self.db, self._memory_model(), self.clock, idle_ttl=IDLE_TTL_SECONDS)

    def _consolidate_memory(self) -> None:
        """End of run: session notes merge into project/global memory, validated by code."""
        if not self.config.memory.enabled:
            return
        from onloop.memory import consolidate

        report = consolidate(self.db, self.row.id, self._memory_model(), self.clock)
        self.events.emit("memory", f"memory consolidation {report.status}: {len(report.inserted)} note(s) kept, "
                         f"ops {report.ops}", fallback=list(report.fallback_reasons), error=report.error)

    def _announce(self, sandbox: Sandbox) -> None:
        self.events.emit("run_started", f"run {self.row.id} on {self.row.branch}", worktree=self.row.worktree,
                         backend=self.config.run.backend, mode=self.config.run.mode, sandbox=sandbox.name)
        missing = [what for what in ("structured_events", "token_usage", "cost")
                   if not getattr(self.backend.capabilities, what)]
        if missing:  # degrade loudly: receipts will show these as unknown, and the operator should know why
            self.events.emit("warning", f"backend {self.backend.name} cannot report {', '.join(missing)}: "
                             "recorded as unknown where no price table applies", missing=missing)
        if sandbox.name == "none":
            self.events.emit("warning", "SANDBOX DISABLED (policy.sandbox = \"none\"): agents and gates run on "
                             "the host with your permissions", sandbox="none")

    def _gates(self) -> Gates:
        from onloop.policy.sandbox import common_git_dir

        factory, config = self.sandbox_factory, self.config
        return Gates(config, self.paths, common_git_dir(Path(self.row.worktree)), self.row.base_commit,
                     sandbox_for=lambda root: factory.gate_sandbox(config, root))

    def _baseline(self, gates: Gates) -> dict[str, GateRun]:
        existing = load_baseline(self.db, self.row.id)
        if existing is not None:
            refuse_broken(self.config, existing)
            return existing
        return take_baseline(self.db, self.row, self.config, gates, self.events)

    def _iterate(self, sandbox: Sandbox, gates: Gates, baseline: dict[str, GateRun], started: float,
                 elapsed_at_start: float) -> tuple[StopReason, str]:
        previous_failing = {name: run.failing for name, run in baseline.items()}
        base_plan = self._base_plan()
        tests = test_files(baseline, gates.base_files)
        while True:
            self.state.elapsed_seconds = elapsed_at_start + (self.clock.monotonic() - started)
            decision = rules.before_iteration(self.state, self.caps)
            if decision:
                return decision
            messages = apply_steering(self.db, self.row.id, self.clock, self.events, self.state.iterations_done + 1)
            ctx = IterationContext(
                db=self.db, row=self.row, config=self.config, paths=self.paths, clock=self.clock,
                events=self.events, state=self.state, sandbox=sandbox, gates=gates, backend=self.backend,
                fallback=self.fallback, baseline=baseline, previous_failing=previous_failing,
                operator_messages=messages, run_started=started, elapsed_at_start=elapsed_at_start,
                base_plan_open=base_plan.open_items, base_plan_items=tuple(i.text for i in base_plan.items),
                test_files=tests, meter=self.meter,
            )
            decision, previous_failing = run_iteration(ctx)
            if decision:
                return decision

    def _base_plan(self) -> Plan:
        """The base commit's plan: done needs every open item checked, not deleted; its items are the
        operator's own words (a "spec change" there allows changed expectations, by policy)."""
        text = show_file(Path(self.row.worktree), self.row.base_commit, self.config.context.plan)
        return parse_plan(text or "")

    def _mark_interrupted(self) -> None:
        from onloop.loop.recovery import recover_interrupted

        recover_interrupted(self.db, self.row, self.backend, self.state, self.events, self.clock,
                            rollback_worktree=False)

    def _stop(self, reason: StopReason, detail: str) -> RunOutcome:
        store.update_run(self.db, self.row.id, {
            **self.state.counters(), "status": "stopped", "stop_reason": reason.value, "stop_detail": detail,
            "exit_code": reason.exit_code, "pid": None, "heartbeat_at": utc_iso(self.clock.now()),
        })
        self.events.iteration = None
        self.events.emit("run_stopped", f"{reason.value}: {detail}", reason=reason.value,
                         exit_code=reason.exit_code, iterations=self.state.iterations_done,
                         spend_usd=str(self.state.spend_usd))
        return RunOutcome(self.row.id, reason, detail, self.state.iterations_done)


class SandboxFactory:
    """Builds the sandbox a run's policy asks for (a class so tests can substitute the policy)."""

    def __call__(self, config: Config, row: RunRow, paths: RunPaths) -> Sandbox:
        from onloop.policy.sandbox import common_git_dir, sandbox_for

        worktree = Path(row.worktree)
        # onloop's own interpreter and package stay readable inside: gates and the scripted agent run
        # on them, and a virtualenv or a checkout may live under a directory the sandbox hides.
        policy = config.policy.model_copy(update={"readable": gate_readable(config)})
        # No scratch or log dirs here: each process gets its own scratch dir through its spec, and the
        # run's logs (the post-mortem evidence) are never reachable from inside.
        return sandbox_for(policy, worktree, common_git_dir(worktree), (), model_endpoint=model_endpoint(config))

    def gate_sandbox(self, config: Config, root: Path) -> Sandbox:
        """The sandbox of the gates running in the sealed checkout `root`: rooted there, read-only (only
        the gate's writable directories on top), with no git dir, no network and no view of the agent's
        worktree."""
        from onloop.policy.sandbox import sandbox_for

        policy = config.policy.model_copy(update={"readable": gate_readable(config)})
        return sandbox_for(policy, root, None, (), read_only_root=True)


def model_endpoint(config: Config) -> str | None:
    """The one endpoint `network = "model-only"` lets through: the run's backend's `base_url`."""
    if config.policy.network != "model-only":
        return None
    options = config.backend_config(config.run.backend).model_dump()
    base_url = options.get("base_url")
    if not base_url:
        raise ConfigError("policy.network = \"model-only\" needs the backend's base_url (the model endpoint "
                          "to let through)", key=f"backends.{config.run.backend}.base_url")
    return str(base_url)


def preflight(config: Config, workspace: Path) -> None:
    """Operator mistakes that would only show once a run exists: found before creating one. Among
    them, a gate's or backend's program the sandbox cannot see (`VisibilityError`, exit code 2)."""
    from onloop.policy.visibility import require_visible

    for name in filter(None, (config.run.backend, config.run.fallback_backend)):
        make_backend(config, name, workspace)
    model_endpoint(config)
    require_visible(config, workspace)


def make_backend(config: Config, name: str, workspace: Path) -> AgentBackend:
    """The backend `name` of `config`: its options, under the run's policy."""
    cfg = config.backend_config(name)
    options = cfg.model_dump()
    if cfg.kind == "builtin":
        # The built-in agent's run_action tool may run exactly the policy's named actions.
        options.setdefault("policy_actions", {k: a.model_dump() for k, a in config.policy.actions.items()})
    return create_backend(BackendSpec(name, cfg.kind, options, workspace, config.policy))


def apply_overrides(config: Config, **overrides: object) -> Config:
    """CLI flags (`--max-iterations`, `--budget`, ...) over onloop.toml, validated like the file."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if not values:
        return config
    run = RunConfig.model_validate({**config.run.model_dump(), **values})
    return replace_config(config, run=run)


def replace_config(config: Config, **sections: object) -> Config:
    return config.model_copy(update=sections)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (the dashboard's worker): the caller handles stopping
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

