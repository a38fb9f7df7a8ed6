"""The scripted backend: onloop's scripted agent executable, read through the Claude Code adapter.

It is Claude Code's adapter with a different argv: the scripted agent speaks the same stream-json, so
the loop under test exercises the real parser, the real subprocess handling and the real sandbox. The
scenario file is copied into the iteration's scratch directory first, because the sandbox hides the
rest of the host's temporary directories from the agent.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from onloop.backends._cli import agent_env, replay_log, run_cli
from onloop.backends.base import AgentRequest, AgentResult, BackendSpec
from onloop.backends.claude_code import ClaudeCodeBackend, ClaudeOptions, parse_options
from onloop.errors import ConfigError


class ScriptedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str = Field(description="path of the scenario file (TOML or JSON), relative to the workspace")
    done_marker: str = Field("<onloop:done/>", description="the marker a completion claim carries")
    base_url: str | None = Field(None, description="model endpoint, passed as ANTHROPIC_BASE_URL like Claude Code")


class ScriptedBackend(ClaudeCodeBackend):
    kind = "scripted"

    def __init__(self, name: str, options: ScriptedOptions, scenario: Path) -> None:
        super().__init__(name, ClaudeOptions(command=[sys.executable]))
        self.scripted = options
        self.scenario = scenario

    def scripted_argv(self, request: AgentRequest) -> list[str]:
        local = request.scratch_dir / ("scenario" + self.scenario.suffix)
        shutil.copyfile(self.scenario, local)
        return [sys.executable, "-m", "onloop.testing.scripted_agent", "--scenario", str(local),
                "--done-marker", self.scripted.done_marker]

    def run(self, request: AgentRequest) -> AgentResult:
        # Claude Code's retry limit too: the scripted agent honours it as the real CLI does.
        env = agent_env(request, {"CLAUDE_CODE_MAX_RETRIES": str(self.options.max_retries)})
        if self.scripted.base_url:
            env["ANTHROPIC_BASE_URL"] = self.scripted.base_url
        result = run_cli(request, self.scripted_argv(request), env, self.parser(), stdin=request.prompt.encode())
        return self.explain(result)

    def parse_log(self, log_path: Path) -> AgentResult:
        return self.explain(replay_log(self.parser(), log_path))


def create(spec: BackendSpec) -> ScriptedBackend:
    options = parse_options(spec, ScriptedOptions)
    scenario = (spec.workspace / options.scenario).resolve()
    if not scenario.is_file():
        raise ConfigError(f"scenario file not found: {scenario}", key=f"backends.{spec.name}.scenario")
    return ScriptedBackend(spec.name, options, scenario)
