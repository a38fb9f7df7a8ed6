"""Assembling the fresh context of one iteration, within a token budget, cutting by rule.

Order (what the agent reads first matters most): operator messages, the standing prompt, the last
gate failure summary, memory, the plan, AGENTS.md, the specs index. When the whole does not fit the
budget, sections are cut from the bottom of a fixed priority list, each cut leaving a visible
`[onloop: ... cut ...]` line with what was left out; nothing is dropped silently. Operator messages
and the standing prompt are never cut.

Tokens are estimated as characters / 4 (close enough for budgeting; no tokenizer dependency).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    title: str
    body: str
    cut_priority: int  # higher is cut first; 0 is never cut


@dataclass(frozen=True, slots=True)
class Context:
    text: str
    tokens: int
    cuts: tuple[str, ...]  # human-readable notes of what was cut


def read_text(path: Path, limit: int = 200_000) -> str:
    if not path.is_file():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")[:limit]


def specs_index(worktree: Path, specs_dir: str) -> str:
    folder = worktree / specs_dir
    index = read_text(folder / "README.md")
    names = sorted(p.relative_to(worktree).as_posix() for p in folder.glob("*.md") if p.name != "README.md")
    listing = "\n".join(f"- {name}" for name in names)
    parts = [part for part in (index.strip(), f"Spec files:\n{listing}" if names else "") if part]
    return "\n\n".join(parts)


def assemble(sections: list[Section], max_tokens: int) -> Context:
    """Render sections in order; cut the lowest-priority ones (largest number first) until it fits."""
    kept = {s.name: s.body for s in sections if s.body.strip()}
    cuts: list[str] = []
    for section in sorted((s for s in sections if s.cut_priority > 0), key=lambda s: -s.cut_priority):
        if estimate_tokens(_render(sections, kept)) <= max_tokens:
            break
        if section.name not in kept:
            continue
        over = estimate_tokens(_render(sections, kept)) - max_tokens
        body = kept[section.name]
        keep_chars = max(0, len(body) - (over + 40) * CHARS_PER_TOKEN)
        if keep_chars > 200:
            kept[section.name] = body[:keep_chars] + (
                f"\n[onloop: {section.title} cut to {keep_chars} of {len(body)} characters to fit the budget]"
            )
            cuts.append(f"{section.name} truncated ({keep_chars}/{len(body)} chars)")
        else:
            kept[section.name] = f"[onloop: {section.title} left out to fit the context budget]"
            cuts.append(f"{section.name} left out")
    text = _render(sections, kept)
    return Context(text, estimate_tokens(text), tuple(cuts))


def _render(sections: list[Section], kept: dict[str, str]) -> str:
    blocks = [f"## {s.title}\n\n{kept[s.name].strip()}" for s in sections if s.name in kept]
    return "\n\n".join(blocks) + "\n"
