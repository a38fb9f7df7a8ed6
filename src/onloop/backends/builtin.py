"""The built-in agent as an agent backend: kind `builtin`.

Options (the `[backends.NAME]` table with `kind = "builtin"`), validated here with pydantic; a wrong key
is a `ConfigError` naming `backends.NAME.KEY`:

- the model keys of `onloop.models.config.ModelConfig`: provider, model, base_url, api_key_env,
  temperature, max_tokens, timeout, stream, prices;
- `max_turns` (default 30): model calls per invocation, then status `max_turns`;
- `max_tool_output_bytes` (default 20000): larger tool results keep head and tail, the rest goes to a
  file in the scratch directory;
- `system_prompt`: replaces the default one (`{actions}` is replaced by the action names);
- `policy_actions`: the policy's named actions, `{name: {argv = [...], timeout = 600, network = false}}`.
  The backend only sees its own options, so the loop passes `Policy.actions` in under this key
  (`{name: action.model_dump()}`); an operator does not normally write it by hand.

The result has the same shape as the CLI adapters'. The capabilities are complete: the built-in agent
reports every event, its tokens and its cost, and it can only do what its structural tools allow.

A model call refused with HTTP 401 or 403 ends the invocation as AUTH_FAILED, with a message naming the
variable that holds the key: the agent loop sees only a failed model call, so the backend watches the
model's errors through a thin wrapper (`_RefusalWatch`) instead of parsing messages after the fact.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from onloop.agent.loop import DEFAULT_SYSTEM_PROMPT, AgentOptions, run_agent
from onloop.agent.tools import ActionSpec
from onloop.agent.transcript import parse_log
from onloop.backends.auth import AUTH_STATUSES, KeyHint, auth_failed_message
from onloop.backends.base import AgentRequest, AgentResult, AgentStatus, BackendSpec, Capabilities
from onloop.clock import Clock
from onloop.config import parse_duration
from onloop.errors import ConfigError
from onloop.models import create_model
from onloop.models.base import ChatModel, ModelError, ModelRequest, ModelResponse
from onloop.models.config import DEFAULT_KEY_ENVS, ModelConfig
from onloop.policy.model import parse_size

Seconds = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


class PolicyActionOption(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: list[str] = Field(min_length=1, description="exact argv of the action")
    timeout: Seconds = Field(600.0, description="wall-clock limit of one run of the action")
    network: bool = Field(False, description="whether the action may use the network")


class BuiltinOptions(ModelConfig):
    """The options of a `builtin` backend: the model's keys plus the agent's own."""

    max_turns: int = Field(30, ge=1, description="model calls per invocation before status max_turns")
    max_tool_output_bytes: Size = Field(20_000, ge=200, description="larger tool results are cut (head+tail)")
    system_prompt: str | None = Field(None, description="replaces the built-in system prompt")
    policy_actions: dict[str, PolicyActionOption] = Field(
        default_factory=dict, description="the policy's named actions, passed in by the loop"
    )

    def model_settings(self) -> ModelConfig:
        return ModelConfig(**{name: getattr(self, name) for name in ModelConfig.model_fields})

    def actions(self) -> dict[str, ActionSpec]:
        return {name: ActionSpec(tuple(a.argv), a.timeout, a.network) for name, a in self.policy_actions.items()}

    def agent_options(self) -> AgentOptions:
        return AgentOptions(max_turns=self.max_turns, max_tool_output_bytes=self.max_tool_output_bytes,
                            system_prompt=self.system_prompt or DEFAULT_SYSTEM_PROMPT)


class _RefusalWatch:
    """A `ChatModel` that remembers the last call refused for its credentials (HTTP 401 or 403)."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.name = model.name
        self.refused: ModelError | None = None

    def complete(self, request: ModelRequest) -> ModelResponse:
        try:
            return self.model.complete(request)
        except ModelError as exc:
            self.refused = exc if exc.status in AUTH_STATUSES else None
            raise


class BuiltinBackend:
    """`AgentBackend` running onloop's own agent over a `ChatModel`."""

    kind = "builtin"
    capabilities = Capabilities(structured_events=True, token_usage=True, cost=True, resume=False,
                                permission_control=True)

    def __init__(self, name: str, model: ChatModel, *, actions: dict[str, ActionSpec] | None = None,
                 options: AgentOptions | None = None, clock: Clock | None = None,
                 key_hint: KeyHint | None = None) -> None:
        self.name = name
        self.model = model
        self.actions = dict(actions or {})
        self.options = options or AgentOptions()
        self.clock = clock
        self.key_hint = key_hint or KeyHint(name, self.kind, None, passed_as=None, suggested="the API key's variable")

    def run(self, request: AgentRequest) -> AgentResult:
        watched = _RefusalWatch(self.model)
        result = run_agent(watched, request, actions=self.actions, options=self.options, clock=self.clock)
        if result.status is AgentStatus.FAILED and watched.refused is not None:
            return replace(result, status=AgentStatus.AUTH_FAILED,
                           error=auth_failed_message(self.key_hint, str(watched.refused)))
        return result

    def parse_log(self, log_path: Path) -> AgentResult:
        return parse_log(log_path)


def parse_options(name: str, options: Any) -> BuiltinOptions:
    """Validate a builtin backend's options; errors name `backends.NAME.KEY`."""
    try:
        return BuiltinOptions.model_validate(dict(options))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(first["msg"], key=f"backends.{name}.{key}" if key else f"backends.{name}") from exc


def create(spec: BackendSpec) -> BuiltinBackend:
    """Factory for kind `builtin` (registered by `onloop.backends.register_builtin`)."""
    options = parse_options(spec.name, {k: v for k, v in spec.options.items() if k != "kind"})
    settings = options.model_settings()
    try:
        if settings.provider != "local":
            settings.resolve_api_key()  # fail at configuration time, not in the middle of a night
        model = create_model(settings)
    except ConfigError as exc:
        raise ConfigError(exc.detail, key=f"backends.{spec.name}.{exc.key or 'provider'}",
                          allowed=exc.allowed) from exc
    hint = KeyHint(spec.name, "builtin", settings.api_key_env, passed_as=None,
                   suggested=DEFAULT_KEY_ENVS.get(settings.provider, "the API key's variable"))
    return BuiltinBackend(spec.name, model, actions=options.actions(), options=options.agent_options(),
                          key_hint=hint)
