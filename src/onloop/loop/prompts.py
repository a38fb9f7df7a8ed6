"""The standing rules onloop adds to every iteration's context, and the default prompts.

These rules are the contract with the agent: one item per iteration, onloop runs the gates, a
completion claim is a request that onloop verifies. `onloop init` writes the default prompts into the
workspace, where the operator tunes them between runs.
"""

from __future__ import annotations

ONLOOP_RULES = """\
You are one iteration of a loop run by onloop. Your context is fresh: everything you need is in the
files on disk (the plan, the specs, AGENTS.md) and in git history.
- Pick the single most important open item of the plan and do only that.
- Search the code before assuming something is missing.
- Keep IMPLEMENTATION_PLAN.md current: check off (`- [x]`) what you finished, add what you discovered.
- onloop runs the gates (tests, lint, types) itself after you stop; it does not trust reports.
- Never delete, skip or weaken tests, never edit protected files (CI config, migrations, onloop.toml,
  lock files): such changes are rolled back and recorded as incidents.
- To remember something for later iterations (a command that works, a pitfall), append one JSON line
  {{"text": "...", "scope": "project"}} to the file named by $ONLOOP_NOTES_FILE (or use your
  save_memory_note tool). Notes are validated: no secrets, no instructions, only durable facts.
- When the plan has no open items left and everything passes, end your final message with
  {marker} . onloop verifies that claim; a false claim is recorded as an incident.
"""

DEFAULT_BUILD_PROMPT = """\
Study specs/README.md and the specs it lists, IMPLEMENTATION_PLAN.md and AGENTS.md.
Choose the most important open item in IMPLEMENTATION_PLAN.md, implement it completely with tests,
then update the plan. One item per iteration.
"""

DEFAULT_PLAN_PROMPT = """\
Study specs/README.md and the specs it lists, and the code. Do not implement anything.
Compare the code against the specs and write IMPLEMENTATION_PLAN.md as a prioritised checklist
(`- [ ] item`) of what is missing or wrong, most important first. The plan is disposable: rewrite it.
"""
