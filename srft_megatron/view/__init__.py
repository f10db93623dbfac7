"""`srft view`: labelled trajectories as static, self-contained HTML pages.

`model.build_view` computes what to show with the preprocessing code itself (chat-template
render, step token spans, weight policy), `html.page` formats it, `assets` holds the inlined
CSS and JavaScript. A training run's page (`srft view --run`): `run` reads `metrics.jsonl` and
lays out the per-label validation NLL, `chart` draws each chart as inline SVG. See
`srft_megatron/commands/view.py` for the command line.
"""

from srft_megatron.view.html import anchor, file_stem, page
from srft_megatron.view.model import StepView, TrajectoryView, build_view

__all__ = ["StepView", "TrajectoryView", "anchor", "build_view", "file_stem", "page"]
