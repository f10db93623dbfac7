"""The evaluation report: one object computed once, rendered as terminal tables, Markdown,
JSON and a PNG plot.

Why one object: the terminal, the Markdown file and the plot must never disagree, so all
numbers are computed in `build_report` and the renderers only format them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from srft_megatron.errors import InputError
from srft_megatron.evaluate.stats import (BootstrapResult, ModelSummary, ResultTable, align_tables,
                                          paired_bootstrap, per_instance, summarize)
from srft_megatron.io import atomic_path, write_json


@dataclass
class EvalReport:
    models: list[ModelSummary]
    comparisons: list[BootstrapResult]
    instances: list[tuple[str, list[int]]]  # (instance id, resolved count per model)
    ks: list[int]
    sources: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"models": [asdict(m) for m in self.models],
                "comparisons": [asdict(c) for c in self.comparisons],
                "per_instance": [{"instance_id": iid, "resolved": dict(zip(self.model_names, counts))}
                                 for iid, counts in self.instances],
                "ks": self.ks, "sources": self.sources}

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]


def build_report(tables: list[ResultTable], compare: list[tuple[str, str]], *, ks: list[int] | None = None,
                 replicates: int = 10_000, seed: int | None = 0, confidence: float = 0.95,
                 sources: dict[str, list[str]] | None = None) -> EvalReport:
    """Summaries for every model, bootstrap CIs for each compared pair, per-instance counts.

    pass@k is reported for the same k for every model (default: 1 and the smallest rollout
    count), so the columns compare like with like; a k above some model's rollout count is
    an error rather than a silently shorter column."""
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise InputError(f"model names must be unique, got {names}")
    min_rollouts = min(t.num_rollouts for t in tables)
    ks = sorted(set(ks or [1, min_rollouts]))
    too_big = [k for k in ks if k > min_rollouts or k < 1]
    if too_big:
        short = [f"{t.name} ({t.num_rollouts})" for t in tables if t.num_rollouts < max(ks)]
        raise InputError(f"pass@{too_big[0]} needs at least {too_big[0]} rollouts per model; "
                         f"rollout counts: {', '.join(short) or min_rollouts}")
    by_name = {t.name: t for t in tables}
    for a, b in compare:
        for n in (a, b):
            if n not in by_name:
                raise InputError(f"--compare names {n!r}, which is not a --run (have {', '.join(names)})")
        if set(by_name[a].instance_ids) != set(by_name[b].instance_ids):
            raise InputError(f"{a!r} ({by_name[a].num_instances} instances) and {b!r} "
                             f"({by_name[b].num_instances}) were evaluated on different instance sets; "
                             "a paired comparison needs the same set")
    comparisons = []
    for a, b in compare:  # each pair on its own (shared) instance set, rows in the same order
        pair = align_tables([by_name[a], by_name[b]])
        comparisons.append(paired_bootstrap(*pair, replicates=replicates, seed=seed, confidence=confidence))
    aligned = align_tables(tables)  # per-instance rows over the union of every model's instances
    return EvalReport([summarize(t, ks) for t in tables], comparisons, per_instance(aligned), ks,
                      sources or {})


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def summary_rows(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    header = ["model", "instances", "rollouts", "resolved % per rollout", "mean ± std"]
    header += [f"pass@{k}" for k in report.ks]
    rows = []
    for m in report.models:
        rows.append([m.name, str(m.instances), str(m.rollouts), " ".join(_fmt(x) for x in m.per_rollout),
                     f"{_fmt(m.mean)} ± {_fmt(m.std)}"] + [_fmt(m.pass_at[k]) for k in report.ks])
    return header, rows


def comparison_rows(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    level = int(round(100 * report.comparisons[0].confidence)) if report.comparisons else 95
    header = ["A − B", "difference (points)", f"{level}% CI", "P(A ≤ B)", "rollouts A/B", "replicates, seed"]
    rows = [[f"{c.name_a} − {c.name_b}", f"{c.difference:+.2f}", f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}]",
             f"{c.prob_a_not_better:.3f}", f"{c.rollouts_a}/{c.rollouts_b}", f"{c.replicates}, {c.seed}"]
            for c in report.comparisons]
    return header, rows


def instance_rows(report: EvalReport, limit: int | None = None) -> tuple[list[str], list[list[str]]]:
    header = ["instance"] + [f"{m.name} (of {m.rollouts})" for m in report.models]
    rows = [[iid] + [str(c) for c in counts] for iid, counts in report.instances[:limit]]
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: EvalReport, plot_name: str | None = None) -> str:
    parts = ["# SWE-bench evaluation report", "",
             "Resolved % = resolved / all instances of the benchmark (unsubmitted instances count as "
             "unresolved); ± is the sample std over rollouts (ddof=1); pass@k is the unbiased estimator "
             "of Chen et al. 2021.", "", "## Models", "", _md_table(*summary_rows(report)), ""]
    if report.comparisons:
        parts += ["## Paired bootstrap of the difference", "",
                  "Each replicate resamples instances (shared by both models) and each model's rollouts "
                  "with replacement; the CI is the percentile interval.", "",
                  _md_table(*comparison_rows(report)), ""]
    if plot_name:
        parts += [f"![resolved rates]({plot_name})", ""]
    header, rows = instance_rows(report)
    parts += [f"## Per instance ({len(rows)} resolved at least once by some model)", "",
              _md_table(header, rows), ""]
    if report.sources:
        parts += ["## Sources", ""] + [f"- {name}: " + ", ".join(f"`{p}`" for p in paths)
                                       for name, paths in report.sources.items()] + [""]
    return "\n".join(parts)


def print_terminal(report: EvalReport, console=None, instance_limit: int = 20) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:  # files and pipes: no wrapping inside cells
        console.width = max(console.width, 200)

    def show(title: str, header: list[str], rows: list[list[str]]) -> None:
        table = Table(title=title, title_justify="left")
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)

    show("Resolved on SWE-bench", *summary_rows(report))
    if report.comparisons:
        show("Paired bootstrap (instances and rollouts resampled)", *comparison_rows(report))
    header, rows = instance_rows(report, instance_limit)
    more = len(report.instances) - len(rows)
    show(f"Per instance (top {len(rows)}" + (f", {more} more in the Markdown)" if more > 0 else ")"),
         header, rows)


def write_outputs(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.json and report.png into `out_dir` (atomically each)."""
    from srft_megatron.evaluate.plot import plot_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"png": out_dir / "report.png", "md": out_dir / "report.md", "json": out_dir / "report.json"}
    with atomic_path(paths["png"]) as tmp:
        plot_report(report, tmp)
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(to_markdown(report, paths["png"].name), encoding="utf-8")
    write_json(paths["json"], report.to_json())
    return paths
