"""A line chart as inline SVG, written here: axes, ticks, one path per series, legend.

Why by hand and not matplotlib: the viewer's pages are single self-contained HTML files that open
anywhere, and an SVG in the page keeps every plotted point in the DOM (`<circle cx cy>` under
`<g class="series" data-series=NAME>`, tick lines with their values as text), so a browser test
can read back what was drawn and check it against the numbers. Forty lines of arithmetic do not
justify a plotting dependency in the project venv.

A missing value (None or NaN) breaks its line: the path starts again at the next value, and a
value alone between gaps is still drawn as its marker.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

WIDTH, HEIGHT = 760, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 34, 46  # margins: y tick labels, legend, title, x tick labels


@dataclass
class Series:
    name: str
    points: list[tuple[float, float | None]]  # (x, y); y None or NaN = missing
    colour: str
    dash: str | None = None  # an SVG stroke-dasharray, e.g. "6 4"

    def finite(self) -> list[tuple[float, float]]:
        return [(x, y) for x, y in self.points if _finite(y)]


def _finite(y: float | None) -> bool:
    return y is not None and math.isfinite(y)


def nice_ticks(lo: float, hi: float, count: int = 5, min_step: float = 0.0) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart, at least `min_step`: 1 for
    steps, which are whole numbers) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got [{lo}, {hi}]")
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = max((hi - lo) / max(count - 1, 1), min_step)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, k = [], 0
    while not ticks or ticks[-1] < hi - 1e-9 * step:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def _label(value: float) -> str:
    return f"{value:.6g}"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def line_chart(series: list[Series], *, title: str, x_label: str, y_label: str,
               width: int = WIDTH, height: int = HEIGHT, integer_x: bool = True) -> str:
    """One `<svg class="chart">`; the axes span the round ticks around every finite point."""
    drawn = [(x, y) for s in series for x, y in s.finite()]
    if not drawn:
        raise ValueError(f"chart {title!r} has no finite point to draw")
    xs = nice_ticks(min(x for x, _ in drawn), max(x for x, _ in drawn), 6, min_step=1.0 if integer_x else 0.0)
    ys = nice_ticks(min(y for _, y in drawn), max(y for _, y in drawn), 5)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(x: float) -> float:
        return round(LEFT + (x - xs[0]) / (xs[-1] - xs[0]) * plot_w, 3)

    def py(y: float) -> float:
        return round(TOP + (ys[-1] - y) / (ys[-1] - ys[0]) * plot_h, 3)

    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}" '
           'font-family="system-ui, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text class="title" x="{LEFT}" y="20" font-size="13" font-weight="600">{_esc(title)}</text>']
    out.append('<g class="y-axis">')
    for v in ys:
        out.append(f'<g class="tick"><line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(v)}" y2="{py(v)}" '
                   f'stroke="#e3e5e8"/><text x="{LEFT - 6}" y="{py(v)}" text-anchor="end" '
                   f'dominant-baseline="middle">{_label(v)}</text></g>')
    out.append(f'<text class="axis-label" transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">{_esc(y_label)}</text></g><g class="x-axis">')
    for v in xs:
        out.append(f'<g class="tick"><line x1="{px(v)}" x2="{px(v)}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
                   f'stroke="#5f6368"/><text x="{px(v)}" y="{TOP + plot_h + 16}" '
                   f'text-anchor="middle">{_label(v)}</text></g>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#5f6368"/>'
               f'<text class="axis-label" x="{LEFT + plot_w / 2}" y="{height - 8}" '
               f'text-anchor="middle">{_esc(x_label)}</text></g>')
    for index, s in enumerate(series):
        out.append(_series(s, px, py))
        y = TOP + 8 + 18 * index
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(f'<g class="legend-entry" data-series="{_esc(s.name)}"><line x1="{width - RIGHT + 14}" '
                   f'x2="{width - RIGHT + 38}" y1="{y}" y2="{y}" stroke="{s.colour}" stroke-width="2.5"{dash}/>'
                   f'<text x="{width - RIGHT + 44}" y="{y}" dominant-baseline="middle">{_esc(s.name)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _series(s: Series, px, py) -> str:
    """A path broken at every missing value, and a marker (with its value as tooltip) per point."""
    commands, pen_down = [], False
    for x, y in s.points:
        if not _finite(y):
            pen_down = False
            continue
        commands.append(f'{"L" if pen_down else "M"}{px(x)} {py(y)}')
        pen_down = True
    dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
    marks = "".join(f'<circle cx="{px(x)}" cy="{py(y)}" r="2.5" fill="{s.colour}">'
                    f'<title>{_esc(s.name)} at {_label(x)}: {y:.4f}</title></circle>' for x, y in s.finite())
    return (f'<g class="series" data-series="{_esc(s.name)}"><path d="{" ".join(commands)}" fill="none" '
            f'stroke="{s.colour}" stroke-width="2"{dash}/>{marks}</g>')
