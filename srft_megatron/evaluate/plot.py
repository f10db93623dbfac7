"""The report's plot: every rollout as a dot, mean ± std per model, and bootstrap CIs.

Why dots and not only bars: with 7 rollouts and a spread of several points, a reader must
see the rollouts themselves to judge a one-point difference. matplotlib's Agg backend
writes the PNG without a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_report(report, path: str | Path) -> None:
    """Write the PNG for an `EvalReport` (see srft_megatron.evaluate.summary)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if report.comparisons else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 0.6 * len(report.models) + 2.6),
                             squeeze=False)
    ax = axes[0][0]
    rng = np.random.default_rng(0)  # vertical jitter only, so equal rates stay visible
    for row, model in enumerate(report.models):
        y = row + rng.uniform(-0.12, 0.12, size=len(model.per_rollout))
        ax.scatter(model.per_rollout, y, s=22, alpha=0.7, color="tab:blue",
                   label="rollout" if row == 0 else None)
        err = 0.0 if np.isnan(model.std) else model.std
        ax.errorbar([model.mean], [row], xerr=[[err], [err]], fmt="D", color="black", capsize=4,
                    label="mean ± std" if row == 0 else None)
    ax.set_yticks(range(len(report.models)), [m.name for m in report.models])
    ax.invert_yaxis()
    ax.set_xlabel("resolved %")
    ax.set_title("Resolved per rollout")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)

    if report.comparisons:
        ax = axes[0][1]
        for row, comp in enumerate(report.comparisons):
            ax.errorbar([comp.difference], [row],
                        xerr=[[comp.difference - comp.ci_low], [comp.ci_high - comp.difference]],
                        fmt="o", color="tab:red", capsize=4)
        ax.axvline(0.0, color="grey", lw=1, ls="--")
        ax.set_yticks(range(len(report.comparisons)),
                      [f"{c.name_a} − {c.name_b}" for c in report.comparisons])
        ax.invert_yaxis()
        level = int(round(100 * report.comparisons[0].confidence))
        ax.set_xlabel(f"difference in resolved % (points), {level}% paired bootstrap CI")
        ax.set_title("Differences")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
