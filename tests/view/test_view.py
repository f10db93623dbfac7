"""`srft view` in a real browser: headless Chromium (Debian's package, installed by
scripts/chromium.sh) loads the page, runs its script and takes a screenshot. The checks read the
*rendered* DOM (`--dump-dom`, after JavaScript) and the screenshot's pixels, against numbers
computed here independently from the labels, the resolved flags and the step renderer."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.view.conftest import browse

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RED, GREEN = (198, 40, 40), (46, 125, 50)  # harmful / good, as in srft_megatron/view/assets.py

pytestmark = pytest.mark.chromium


def srft(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srft_megatron.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "trajectories.jsonl"
    proc = srft("ingest", *map(str, sorted((EXAMPLES / "trajectories").glob("*.traj"))),
                "--resolved", str(EXAMPLES / "resolved.jsonl"), "-o", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def page(ingested) -> Path:
    out = ingested.parent / "all.html"
    proc = srft("view", str(ingested), str(EXAMPLES / "labels.jsonl"), "-o", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


class DomReader(HTMLParser):
    """Per trajectory section: its data-* attributes (some written by the page's script), the
    summary bar's segments, and per step its classes, attributes and token text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, dict] = {}
        self.body: dict = {}
        self._stack: list[tuple[str, str]] = []  # (tag, role of the element we collect into)
        self._sec = self._step = None
        self._details: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        role = ""
        if tag == "body":
            self.body = a
        elif tag == "section" and "traj" in cls:
            self._sec = {"attrs": a, "bar": [], "steps": [], "details": []}
            self.sections[a["data-id"]] = self._sec
        elif tag == "a" and self._stack and self._stack[-1][1] == "bar":
            self._sec["bar"].append(a.get("class"))
        elif tag == "div" and "bar" in cls:
            role = "bar"
        elif tag == "li" and "step" in cls:
            self._step = {"attrs": a, "classes": cls, "tokens": "", "token_classes": []}
            self._sec["steps"].append(self._step)
        elif tag == "div" and "tokens" in cls:
            role = "tokens"
            self._step["token_classes"] = cls
        elif tag == "details" and "obs" in cls:
            self._details = {"open": "open" in a, "text": ""}
            self._sec["details"].append(self._details)
        elif tag == "pre" and self._details is not None:
            role = "obs"
        if tag not in ("br", "meta", "img", "input", "link"):
            parent = self._stack[-1][1] if self._stack else ""
            self._stack.append((tag, role or (parent if parent in ("tokens", "obs") else "")))

    def handle_endtag(self, tag):
        while self._stack:
            top, _ = self._stack.pop()
            if top == tag:
                break
        if tag == "details":
            self._details = None

    def handle_data(self, data):
        role = self._stack[-1][1] if self._stack else ""
        if role == "tokens":
            self._step["tokens"] += data
        elif role == "obs":
            self._details["text"] += data


def expected_kept(tid: str) -> list[bool]:
    """Policy srft, from the files themselves: unresolved trajectories lose their harmful steps."""
    resolved = {r["id"]: r["resolved"] for r in map(json.loads, (EXAMPLES / "resolved.jsonl").read_text().splitlines())}
    labels = {r["id"]: r for r in map(json.loads, (EXAMPLES / "labels.jsonl").read_text().splitlines())}
    return [resolved[tid] or s["label"] != "harmful" for s in labels[tid]["steps"]]


def test_rendered_page_shows_kept_and_rejected_steps_and_their_tokens(chromium, page, ingested, tmp_path):
    dom = browse(chromium, tmp_path, page.as_uri(), "--dump-dom", "--virtual-time-budget=5000").stdout
    reader = DomReader()
    reader.feed(dom)
    assert reader.body.get("data-rendered") == "yes", "the page's script did not run"
    assert len(reader.sections) == 8

    from srft_megatron import load_tokenizer
    from srft_megatron.render import StepRenderer
    from srft_megatron.trajectory import read_trajectories

    renderer = StepRenderer(load_tokenizer("qwen2.5"), "tools")
    trajs = {t.id: t for _, t in read_trajectories(str(ingested))}
    for tid, sec in reader.sections.items():
        kept = expected_kept(tid)
        rendered = renderer.render(trajs[tid])
        trained = rendered.step_weights([1.0 if k else 0.0 for k in kept]).sum()
        # Written by the page's JavaScript from the steps' data attributes:
        assert int(sec["attrs"]["data-kept"]) == sum(kept)
        assert int(sec["attrs"]["data-rejected"]) == len(kept) - sum(kept)
        assert int(sec["attrs"]["data-trained-tokens"]) == int(trained)
        assert int(sec["attrs"]["data-total-tokens"]) == len(rendered.input_ids)
        assert sec["bar"] == ["kept" if k else "rejected" for k in kept]
        assert [("kept" in s["classes"]) for s in sec["steps"]] == kept
        for step, span, k in zip(sec["steps"], rendered.steps, kept):
            # the token chips are exactly the step's span of the full render, trained or masked
            assert step["tokens"] == rendered.text[span.char_start:span.char_end]
            assert int(step["attrs"]["data-tokens"]) == span.end - span.start
            assert ("trained" if k else "masked") in step["token_classes"]
            assert step["tokens"].endswith("<|im_end|>")


def test_long_observations_are_collapsed(chromium, page, tmp_path):
    dom = browse(chromium, tmp_path, page.as_uri(), "--dump-dom").stdout
    reader = DomReader()
    reader.feed(dom)
    details = [d for sec in reader.sections.values() for d in sec["details"]]
    long = [d for d in details if d["text"].count("\n") + 1 > 12]
    short = [d for d in details if d["text"].count("\n") + 1 <= 12 and len(d["text"]) <= 1500]
    assert long and short
    assert not any(d["open"] for d in long)
    assert all(d["open"] for d in short)


def _pixels(png: Path):
    import numpy as np
    from PIL import Image

    with Image.open(png) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def _colour_pixels(pixels, rgb: tuple[int, int, int], tol: int = 12) -> int:
    import numpy as np

    return int((np.abs(pixels - np.asarray(rgb, dtype=np.int16)) <= tol).all(axis=-1).sum())


@pytest.fixture(scope="module")
def pages_dir(ingested) -> Path:
    out = ingested.parent / "pages"
    proc = srft("view", str(ingested), str(EXAMPLES / "labels.jsonl"), "--output-dir", str(out),
                "--id", "datekit-3__misused_tools", "--id", "datekit-2__clean", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def test_screenshot_shows_the_labels_in_colour(chromium, pages_dir, tmp_path):
    shots = {}
    for tid in ("datekit-3__misused_tools", "datekit-2__clean"):
        png = tmp_path / f"{tid}.png"
        browse(chromium, tmp_path, (pages_dir / f"{tid}.html").as_uri(), f"--screenshot={png}", "--window-size=1100,1400")
        pixels = _pixels(png)
        assert pixels.shape == (1400, 1100, 3)
        assert len({tuple(px) for px in pixels[::7, ::7].reshape(-1, 3).tolist()}) > 100  # not a blank page
        shots[tid] = (_colour_pixels(pixels, RED), _colour_pixels(pixels, GREEN))
    (bad_red, bad_green), (clean_red, clean_green) = shots["datekit-3__misused_tools"], shots["datekit-2__clean"]
    # 5 of 7 steps harmful: red summary bar, red step borders and badges; the clean run has
    # red only in the legend chip.
    assert bad_red > 5 * clean_red
    assert clean_green > bad_green > 0


def test_output_dir_writes_an_index_and_a_page_per_trajectory(pages_dir):
    pages = sorted(p.name for p in pages_dir.glob("*.html"))
    assert pages == ["datekit-2__clean.html", "datekit-3__misused_tools.html", "index.html"]
    index = (pages_dir / "index.html").read_text()
    assert 'href="datekit-2__clean.html"' in index and 'href="datekit-3__misused_tools.html"' in index
    for name in pages:  # self-contained: nothing fetched from elsewhere
        text = (pages_dir / name).read_text()
        assert "<script>" in text and "<style>" in text
        assert not any(f'{attr}="{scheme}' in text for attr in ("src", "href") for scheme in ("http", "//", "file"))


def test_labels_that_do_not_fit_are_a_one_line_error(ingested, tmp_path):
    bad = tmp_path / "labels.jsonl"
    rows = [json.loads(l) for l in (EXAMPLES / "labels.jsonl").read_text().splitlines()]
    rows[0]["steps"] = rows[0]["steps"][:-1]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = srft("view", str(ingested), str(bad), "-o", str(tmp_path / "x.html"), "--quiet")
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and rows[0]["id"] in err[0] and "labels for" in err[0], proc.stderr
    assert not (tmp_path / "x.html").exists()
