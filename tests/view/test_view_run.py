"""`srft view --run RUN_DIR`: the per-label validation NLL per step as an inline SVG, checked in
headless Chromium. The rendered DOM is parsed back — each series' markers, and the axes' tick
lines with the values they print — and every plotted point, mapped back through the axes, must
equal the value in the metrics.jsonl written here."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.view.conftest import browse
from tests.view.test_view import srft

pytestmark = pytest.mark.chromium

LABELS = ("good", "unnecessary", "harmful", "recover", "unlabelled")


def write_run(run_dir: Path, steps: int = 30, eval_every: int = 5) -> dict[str, dict[int, float | None]]:
    """A metrics.jsonl as the trainer writes it (eval numbers in their own record at the step, a
    null where a label had no tokens, one NaN), and the validation values it holds."""
    run_dir.mkdir(parents=True)
    values: dict[str, dict[int, float | None]] = {f"val/nll/{k}": {} for k in (*LABELS, "resolved", "unresolved")}
    lines = []
    for step in range(1, steps + 1):
        lines.append(json.dumps({"step": step, "loss": 11.7 - 0.09 * step + 0.05 * math.sin(step), "lr": 1e-4}))
        if step % eval_every == 0 or step == 1:
            rec = {"step": step, "val/loss": 11.0 - 0.05 * step}
            for i, label in enumerate(LABELS):  # kept steps fall, harmful ones stay
                rec[f"val/nll/{label}"] = 10.5 + 0.1 * i - (0.12 if label == "good" else 0.01) * step
            rec["val/nll/resolved"], rec["val/nll/unresolved"] = 10.2 - 0.04 * step, 10.4 - 0.02 * step
            if step == 10:
                rec["val/nll/recover"] = None  # no recover token in that eval's samples
            if step == 20:
                rec["val/nll/unnecessary"] = float("nan")
            lines.append(json.dumps(rec))  # NaN is written as the bare token NaN
            for key in values:
                value = rec[key]
                values[key][step] = value if value is not None and math.isfinite(value) else None
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return values


class SvgReader(HTMLParser):
    """Every `<svg class="chart">`: its series' markers and its axes' ticks (value, pixel)."""

    def __init__(self):
        super().__init__()
        self.charts: list[dict] = []
        self._axis = self._series = None
        self._tick: dict | None = None
        self._text = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class", "")
        if tag == "svg" and cls == "chart":
            self.charts.append({"title": a.get("aria-label"), "series": {}, "paths": {}, "x": [], "y": []})
        elif not self.charts:
            return
        elif tag == "g" and cls in ("x-axis", "y-axis"):
            self._axis = cls[0]
        elif tag == "g" and cls == "series":
            self._series = a["data-series"]
            self.charts[-1]["series"][self._series] = []
        elif tag == "g" and cls == "tick":
            self._tick = {}
        elif tag == "line" and self._tick is not None:
            self._tick["px"] = float(a["x1"] if self._axis == "x" else a["y1"])
        elif tag == "text" and self._tick is not None:
            self._text = True
        elif tag == "circle" and self._series:
            self.charts[-1]["series"][self._series].append((float(a["cx"]), float(a["cy"])))
        elif tag == "path" and self._series:
            self.charts[-1]["paths"][self._series] = a["d"]

    def handle_data(self, data):
        if self._text:
            self._tick["value"] = float(data)
            self.charts[-1][self._axis].append((self._tick["value"], self._tick["px"]))
            self._text, self._tick = False, None

    def handle_endtag(self, tag):
        if tag == "g" and self._series:
            self._series = None
        elif tag == "svg":
            self._axis = None


def axis(ticks: list[tuple[float, float]]):
    """pixel -> value through the first and last tick the page printed."""
    (v0, p0), (v1, p1) = ticks[0], ticks[-1]
    return lambda p: v0 + (p - p0) * (v1 - v0) / (p1 - p0)


def rendered_charts(chromium: str, page: Path, tmp: Path) -> tuple[str, list[dict]]:
    dom = browse(chromium, tmp, page.as_uri(), "--dump-dom").stdout
    reader = SvgReader()
    reader.feed(dom)
    return dom, reader.charts


def test_run_page_plots_each_label_nll_per_step(chromium, tmp_path):
    run = tmp_path / "run"
    values = write_run(run)
    proc = srft("view", "--run", str(run))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {run / 'run.html'}: steps 1–30, 7 evaluations" in proc.stdout
    dom, charts = rendered_charts(chromium, run / "run.html", tmp_path)
    assert [c["title"].split(" ")[:2] for c in charts] == [["Validation", "NLL"], ["Validation", "NLL"], ["Loss", "(the"]]
    nll, outcome, loss = charts
    assert list(nll["series"]) == list(LABELS) and list(outcome["series"]) == ["resolved", "unresolved"]
    assert all(value == int(value) for chart in charts for value, _ in chart["x"])  # steps: whole-number ticks
    for chart, names in ((nll, LABELS), (outcome, ("resolved", "unresolved"))):
        to_x, to_y = axis(chart["x"]), axis(chart["y"])
        span = chart["y"][-1][0] - chart["y"][0][0]
        for name in names:
            expected = [(step, v) for step, v in sorted(values[f"val/nll/{name}"].items()) if v is not None]
            drawn = chart["series"][name]
            assert len(drawn) == len(expected), name  # one marker per finite value, none for null/NaN
            for (step, value), (cx, cy) in zip(expected, drawn):
                assert to_x(cx) == pytest.approx(step, abs=1e-3)
                assert to_y(cy) == pytest.approx(value, abs=1e-5 * span)
    # the line breaks where a value is missing: a new M after step 10 (recover) and 20 (unnecessary)
    assert len(re.findall("M", nll["paths"]["recover"])) == 2 and len(re.findall("M", nll["paths"]["good"])) == 1
    assert len(re.findall("M", nll["paths"]["unnecessary"])) == 2
    assert len(loss["series"]["training loss"]) == 30 and len(loss["series"]["validation loss"]) == 7
    assert "no validation records" not in dom


def test_run_without_validation_says_so(chromium, tmp_path):
    run = tmp_path / "noval"
    run.mkdir()
    records = [{"step": s, "loss": 10.0 - s, "grad_norm": None} for s in range(1, 6)]
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, records)) + '\n{"step": 6, "lo')  # killed mid-write
    out = tmp_path / "noval.html"
    proc = srft("view", "--run", str(run), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "no validation records" in proc.stdout and f"{run / 'metrics.jsonl'}:6: malformed JSON" in proc.stderr
    dom, charts = rendered_charts(chromium, out, tmp_path)
    assert "no validation records in this run" in dom and "metrics.jsonl:6: malformed JSON" in dom
    assert [list(c["series"]) for c in charts] == [["training loss"]]
    to_y = axis(charts[0]["y"])
    assert [round(to_y(cy), 6) for _, cy in charts[0]["series"]["training loss"]] == [9.0, 8.0, 7.0, 6.0, 5.0]


def test_run_errors_name_the_file(tmp_path):
    proc = srft("view", "--run", str(tmp_path))
    assert proc.returncode == 2 and f"{tmp_path / 'metrics.jsonl'}: no metrics.jsonl here" in proc.stderr
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1.0}\n')
    proc = srft("view", "--run", str(tmp_path))
    assert proc.returncode == 2 and "no step records" in proc.stderr and "Traceback" not in proc.stderr
    proc = srft("view", "--run", str(tmp_path), "--dataset", "data/x")
    assert proc.returncode == 2 and "drop --dataset" in proc.stderr


@pytest.mark.usefixtures("cpu_shim")  # megatron-core in this process (tests/conftest.py)
def test_run_page_reads_what_the_trainer_writes(tmp_path):
    """The page's contract with the trainer: a real two-step run with validation at every step
    (training/evaluation.py) is drawn with every `val/nll/<label>` value it logged."""
    from srft_megatron.parallel.dims import destroy
    from srft_megatron.training.config import load_config
    from srft_megatron.training.trainer import Trainer
    from srft_megatron.view.run import read_metrics, run_page
    from tests.training.helpers import TINY_CONFIG, make_dataset

    prefix = make_dataset(tmp_path / "labelled", n_docs=30, max_len=50, labels=True)
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{prefix}]", "data.validation_fraction=0.2", "train.steps=2",
                                    "train.eval_interval=1", "train.eval_samples=4", "train.micro_batch_size=2",
                                    "train.global_batch_size=4", "model.seq_length=64", "logging.tensorboard=false",
                                    "checkpoint.save_on_exit=false"])
    try:
        assert Trainer(cfg, tmp_path / "run").train() == 0
    finally:
        destroy(process_group=True)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in logged if any(k.startswith("val/nll/") for k in r)]
    assert [r["step"] for r in evals] == [0, 1, 2]
    reader = SvgReader()
    reader.feed(run_page(read_metrics(tmp_path / "run")))  # no script on the page: its source is its DOM
    nll = reader.charts[0]
    labels = [label for label in LABELS if f"val/nll/{label}" in evals[0]]
    assert list(nll["series"]) == labels and "good" in labels and "harmful" in labels
    to_y = axis(nll["y"])
    span = nll["y"][-1][0] - nll["y"][0][0]
    for label in labels:
        drawn = [to_y(cy) for _, cy in nll["series"][label]]
        assert drawn == pytest.approx([r[f"val/nll/{label}"] for r in evals], abs=1e-5 * span), label
