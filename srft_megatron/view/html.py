"""Format `TrajectoryView`s as one static, self-contained HTML page.

Why a page and not a notebook: a labelled trajectory is easier to judge by looking at it —
which steps the critic rejected (colour), which tokens the loss sees (green) and which it
masks (grey, struck through) — and a single HTML file opens anywhere without a server.
Everything is escaped here; the only script is `assets.JS`, which draws the summary bars.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from typing import Iterable

from srft_megatron.view.assets import CSS, JS, LABEL_COLOURS
from srft_megatron.view.model import Observation, StepView, TrajectoryView

# Observations longer than this are collapsed (a click opens them).
COLLAPSE_LINES = 12
COLLAPSE_CHARS = 1500
SPECIAL = re.compile(r"^<\|[a-z_]+\|>$|^</?tool_call>$")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


# An id made only of these characters (and not too long) is its own page name. Lower case only:
# on a case-insensitive file system `A.html` and `a.html` would be one page.
_PLAIN_ID = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,99}")
PAGE_NAME_PREFIX_CHARS = 80


def file_stem(traj_id: str) -> str:
    """A trajectory id as a file name and HTML id: unique and at most 100 characters.

    A plain id (lower-case letters, digits, `_.-`, <= 100 characters) is used as is. Any other
    (`a/b`, `A`, a 300-character id) becomes its first 80 safe characters, `~` and 16 hex digits
    of its sha256: `~` never occurs in a plain id, so the two kinds cannot meet, and distinct
    ids differ in the digest (`a/b` and `a_b` no longer share one page)."""
    if _PLAIN_ID.fullmatch(traj_id):
        return traj_id
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", traj_id)[:PAGE_NAME_PREFIX_CHARS].lstrip(".")
    return f"{safe}~{hashlib.sha256(traj_id.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def anchor(traj_id: str) -> str:
    return "t-" + file_stem(traj_id)


def _resolved_badge(resolved: bool | None) -> str:
    kind = {True: "resolved", False: "unresolved", None: "unknown"}[resolved]
    text = {True: "resolved", False: "unresolved", None: "resolution unknown"}[resolved]
    return f'<span class="badge {kind}">{text}</span>'


def _collapsible(css: str, title: str, text: str, force_closed: bool = False) -> str:
    lines = text.count("\n") + 1
    long = lines > COLLAPSE_LINES or len(text) > COLLAPSE_CHARS
    is_open = "" if (long or force_closed) else " open"
    return (f'<details class="{css}"{is_open}><summary>{esc(title)} &middot; {lines} lines'
            f'{" (collapsed)" if long else ""}</summary><pre>{esc(text)}</pre></details>')


def _tokens(step: StepView) -> str:
    out = []
    for tok in step.tokens:
        cls = "tok special" if SPECIAL.match(tok.text) else "tok"
        out.append(f'<span class="{cls}" title="token {tok.id}">{esc(tok.text)}</span>')
    return "".join(out)


def _step(traj: TrajectoryView, step: StepView) -> str:
    colour = LABEL_COLOURS.get(step.label, LABEL_COLOURS[None])
    kept = step.kept
    conf = "" if step.confidence is None else f" &middot; confidence {step.confidence:.2f}"
    n = len(step.tokens)
    verdict = (f'<span class="kept">kept &middot; weight {step.weight:g}</span>' if kept
               else '<span class="rejected-tag">rejected &middot; weight 0</span>')
    parts = [
        f'<li class="step label-{esc(step.label or "none")} {"kept" if kept else "rejected"}" '
        f'id="{anchor(traj.id)}-s{step.step}" data-step="{step.step}" data-label="{esc(step.label or "")}" '
        f'data-weight="{step.weight:g}" data-tokens="{n}" data-colour="{colour}" style="--label: {colour}">',
        f'<div class="step-head"><span class="num">Step {step.step}</span>'
        f'<span class="label">{esc(step.label or "unlabelled")}</span>{verdict}'
        f'<span class="counts">{n} tokens {"trained" if kept else "masked"}{conf}</span></div>',
    ]
    if step.reason:
        parts.append(f'<div class="reason">{esc(step.reason)}</div>')
    parts.append(f'<div class="tokens {"trained" if kept else "masked"}">{_tokens(step)}</div>')
    for name, args in step.calls:
        parts.append(_collapsible("call", f"tool call {name} (readable)", args, force_closed=True))
    obs_title = ", ".join(sorted({o.role for o in step.observations})) or "context"
    for obs in step.observations:
        parts.append(_collapsible("obs", f"{_demo(obs)}{obs.role} output", obs.text))
    parts.append(f'<div class="context">{esc(obs_title)}: {step.context_tokens_after} tokens in context '
                 f'(never trained)</div></li>')
    return "".join(parts)


def _demo(obs: Observation) -> str:
    return "demonstration (context, not a step) &middot; " if obs.demo else ""


def _prompt(prompt: list[Observation], tokens: int, tools: list[dict] | None = None) -> str:
    body = "".join(f"<pre><b>{_demo(o)}{esc(o.role)}</b>\n{esc(o.text)}</pre>" for o in prompt)
    if tools:  # what the template put in the system turn, shown as the JSON the agent sent
        names = ", ".join(t["function"]["name"] for t in tools)
        body = (f'<details class="tools"><summary>tools given to the agent: {esc(names)}</summary>'
                f'<pre>{esc(json.dumps(tools, indent=2, ensure_ascii=False))}</pre></details>') + body
    demos = sum(o.demo for o in prompt)
    extra = (f" &middot; {len(tools)} tools" if tools else "") + (f" &middot; {demos} demonstration turns" if demos else "")
    return (f'<details class="prompt"><summary>prompt: {len(prompt)} messages{extra} &middot; {tokens} tokens '
            f'(context, never trained)</summary>{body}</details>')


def trajectory_section(traj: TrajectoryView) -> str:
    critic = traj.critic.get("model", "none") if traj.critic else "none"
    meta = " &middot; ".join(esc(x) for x in (
        f"instance {traj.instance_id}", f"source {traj.source}", f"labels by {critic}",
        f"policy {traj.policy}", f"{traj.total_tokens} tokens") if x)
    steps = "".join(_step(traj, s) for s in traj.steps)
    return (f'<section class="traj" id="{anchor(traj.id)}" data-id="{esc(traj.id)}" '
            f'data-total-tokens="{traj.total_tokens}">'
            f'<h2>{esc(traj.id)}{_resolved_badge(traj.resolved)}</h2><div class="meta">{meta}</div>'
            f'<div class="summary"><div class="bar"></div><div class="summary-text">summary needs JavaScript'
            f'</div></div>{_prompt(traj.prompt, traj.prompt_tokens, traj.tools)}<ol class="steps">{steps}</ol></section>')


def _index(trajs: list[TrajectoryView], link: callable) -> str:
    rows = []
    for t in trajs:
        counts = t.counts()
        mini = "".join(f'<span style="background:{LABEL_COLOURS.get(s.label, LABEL_COLOURS[None])};'
                       f'opacity:{1 if s.kept else 0.35}" title="step {s.step}: {esc(s.label)}"></span>'
                       for s in t.steps)
        rows.append(f'<tr><td><a href="{link(t)}">{esc(t.id)}</a></td><td>{_resolved_badge(t.resolved)}</td>'
                    f'<td class="num">{counts["steps"]}</td><td class="num">{counts["kept"]}</td>'
                    f'<td class="num">{counts["rejected"]}</td><td class="num">{t.trained_tokens:,.0f} / '
                    f'{t.total_tokens:,}</td><td><div class="minibar">{mini}</div></td></tr>')
    return ('<table class="index"><thead><tr><th>trajectory</th><th>outcome</th><th>steps</th><th>kept</th>'
            '<th>rejected</th><th>trained / all tokens</th><th>steps by label</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _legend() -> str:
    chips = "".join(f'<span class="chip" style="background:{c}">{esc(lab)}</span>'
                    for lab, c in LABEL_COLOURS.items() if lab)
    return (f'<div class="legend">{chips}<span class="chip" style="background:#6fbf7f">trained token</span>'
            '<span class="chip" style="background:#9aa0a6">masked token</span></div>')


def page(trajs: Iterable[TrajectoryView], title: str, subtitle: str, index: bool | None = None,
         link: callable | None = None) -> str:
    """One page: an index table (when there are several trajectories) and a section for each."""
    trajs = list(trajs)
    show_index = len(trajs) > 1 if index is None else index
    body = _index(trajs, link or (lambda t: "#" + anchor(t.id))) if show_index else ""
    sections = "".join(trajectory_section(t) for t in trajs) if link is None else ""
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><style>{CSS}</style></head><body>'
            f'<header class="page"><h1>{esc(title)}</h1><div class="sub">{esc(subtitle)}</div>{_legend()}</header>'
            f'<main>{body}{sections}</main><script>{JS}</script></body></html>')
