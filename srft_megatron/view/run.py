"""A training run's page: per-label validation NLL per step, and the loss, from `metrics.jsonl`.

    srft view --run runs/srft -o srft-run.html

Why this chart: the one weighted loss says little about whether SRFT works. What does is the NLL
of each kind of step on held-out trajectories (issue 13): kept (`good`) steps should get more
likely while `harmful` steps — in context, never trained — should not follow. The trainer logs
`val/nll/<label>` (`training/label_nll.py`), `val/nll/resolved`, `val/nll/unresolved` and
`val/loss` at every eval; this page draws them per step, beside the training `loss`.

Records are merged by `step` (an eval may be its own record or share the step's). A value that
is null, NaN or not a number is missing: its line breaks there. A line that is not JSON or has
no integer `step` (a run killed mid-write leaves half a last line) is left out and listed on the
page, so a half-written run still shows what it has; a run that never evaluated says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from srft_megatron.dataset import LABEL_CODES
from srft_megatron.errors import InputError
from srft_megatron.io import iter_jsonl_tolerant
from srft_megatron.view.assets import CSS, LABEL_COLOURS
from srft_megatron.view.chart import Series, line_chart
from srft_megatron.view.html import esc

METRICS = "metrics.jsonl"
VAL_LABELS = tuple(label for label in LABEL_CODES if label != "context")  # label_nll_metrics leaves it out
OUTCOMES = {"resolved": "#00838f", "unresolved": "#6a1b9a"}
UNLABELLED_COLOUR = "#757575"


@dataclass
class RunMetrics:
    path: Path
    steps: dict[int, dict] = field(default_factory=dict)  # step -> merged record
    skipped: list[InputError] = field(default_factory=list)

    def series(self, key: str) -> list[tuple[float, float | None]]:
        """(step, value) for every step that logged `key`; a non-number is None (missing)."""
        out = []
        for step in sorted(self.steps):
            if key in self.steps[step]:
                value = self.steps[step][key]
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                out.append((float(step), float(value) if ok else None))
        return out

    def evaluations(self) -> int:
        """How many steps carry validation numbers (the trainer evaluates at step 0 too)."""
        return sum(any(key.startswith("val/") for key in record) for record in self.steps.values())

    def has_validation(self) -> bool:
        return self.evaluations() > 0

    def describe(self) -> str:
        steps = sorted(self.steps)
        return f"steps {steps[0]}–{steps[-1]}, {self.evaluations()} evaluations"


def read_metrics(run_dir: str | Path) -> RunMetrics:
    """`RUN_DIR/metrics.jsonl` (or that file itself) merged by step; see the module doc."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        raise InputError(f"no {METRICS} here (is it an `srft train --run-dir`?)", file=str(path))
    metrics = RunMetrics(path)
    for line, obj in iter_jsonl_tolerant(path):
        if isinstance(obj, InputError):
            metrics.skipped.append(obj)
        elif not isinstance(obj, dict) or not isinstance(obj.get("step"), int) or isinstance(obj["step"], bool):
            metrics.skipped.append(InputError("record without an integer 'step'", file=str(path), line=line))
        else:
            metrics.steps.setdefault(obj["step"], {}).update(obj)
    if not metrics.steps:
        raise InputError("no step records" + (f" ({len(metrics.skipped)} unreadable lines)" if metrics.skipped
                                              else ""), file=str(path))
    return metrics


def _chart(metrics: RunMetrics, keys: dict[str, tuple[str, str, str | None]], title: str, y_label: str) -> str:
    """A chart of the keys that have at least one value; '' when none has."""
    series = [Series(name, metrics.series(key), colour, dash) for key, (name, colour, dash) in keys.items()]
    series = [s for s in series if s.finite()]
    if not series:
        return ""
    return f'<figure class="run-chart">{line_chart(series, title=title, x_label="step", y_label=y_label)}</figure>'


def nll_chart(metrics: RunMetrics) -> str:
    keys = {f"val/nll/{label}": (label, LABEL_COLOURS.get(label, UNLABELLED_COLOUR), None) for label in VAL_LABELS}
    return _chart(metrics, keys, "Validation NLL per step label (mean over the label's tokens)", "NLL (nats/token)")


def outcome_chart(metrics: RunMetrics) -> str:
    keys = {f"val/nll/{name}": (name, colour, None) for name, colour in OUTCOMES.items()}
    return _chart(metrics, keys, "Validation NLL of resolved and unresolved trajectories", "NLL (nats/token)")


def loss_chart(metrics: RunMetrics) -> str:
    keys = {"loss": ("training loss", "#20232a", None), "val/loss": ("validation loss", "#20232a", "6 4")}
    return _chart(metrics, keys, "Loss (the training objective: weighted mean NLL)", "loss")


def _latest_table(metrics: RunMetrics) -> str:
    """First and last value of each validation number, so the gap can be read without the chart."""
    rows = []
    for key in (*(f"val/nll/{label}" for label in VAL_LABELS), "val/nll/resolved", "val/nll/unresolved", "val/loss"):
        values = [(step, v) for step, v in metrics.series(key) if v is not None]
        if values:
            (s0, v0), (s1, v1) = values[0], values[-1]
            rows.append(f'<tr data-key="{esc(key)}"><td>{esc(key)}</td><td class="num">{v0:.4f} (step {s0:.0f})'
                        f'</td><td class="num">{v1:.4f} (step {s1:.0f})</td><td class="num">{v1 - v0:+.4f}</td></tr>')
    return ('<table class="index"><thead><tr><th>validation metric</th><th class="num">first</th>'
            '<th class="num">last</th><th class="num">change</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def run_page(metrics: RunMetrics, title: str = "SRFT training run") -> str:
    """The whole page: the charts, a first/last table, and notes on what is missing."""
    notes = []
    if metrics.has_validation():
        body = nll_chart(metrics) + outcome_chart(metrics) + _latest_table(metrics)
    else:
        body = ""
        notes.append("no validation records in this run's metrics.jsonl: nothing logged val/* (set "
                     "train.eval_interval and a validation set to see the per-label NLL)")
    body += loss_chart(metrics)
    notes += [f"left out: {err}" for err in metrics.skipped]
    note_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    subtitle = f"{metrics.path} · {metrics.describe()}"
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{esc(title)}</title><style>{CSS}\nfigure.run-chart {{ margin: 0 0 18px; }}\n'
            'table.index th.num { text-align: right; }\n'
            'p.note { background: #fff8e1; border: 1px solid #f0d58c; padding: 6px 10px; border-radius: 4px; }'
            f'</style></head><body><header class="page"><h1>{esc(title)}</h1><div class="sub">{esc(subtitle)}'
            f'</div></header><main>{note_html}{body}</main></body></html>')
