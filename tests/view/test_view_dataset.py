"""`srft view --dataset PREFIX` shows what that dataset trains on: the tokenizer, render, tools and
weight policy come from its meta.json, so a fractional-weight xml dataset is shown as such."""

from __future__ import annotations

import json
from pathlib import Path

from tests.data.conftest import srft

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KNOBS = ["--policy", "srft", "--label-weight", "unnecessary=0.5", "--reject-labels", "harmful,unnecessary",
         "--min-confidence", "0.2", "--render", "xml"]


def test_view_of_a_dataset_uses_its_own_settings(tmp_path):
    trajs = tmp_path / "trajectories.jsonl"
    srft("ingest", *sorted((EXAMPLES / "trajectories").glob("*.traj")), "--resolved",
         EXAMPLES / "resolved.jsonl", "-o", trajs, "--quiet")
    labels = EXAMPLES / "labels.jsonl"
    prefix = tmp_path / "data" / "frac"
    srft("preprocess", "--trajectories", trajs, "--labels", labels, *KNOBS, "--tools", "swe-agent",
         "--seq-length", 8192, "--output-prefix", prefix, "--quiet")

    from_dataset = tmp_path / "dataset.html"
    srft("view", "--dataset", prefix, "-o", from_dataset, "--quiet")
    explicit = tmp_path / "explicit.html"
    srft("view", trajs, labels, *KNOBS, "--tools", "swe-agent", "-o", explicit, "--quiet")
    default = tmp_path / "default.html"
    srft("view", trajs, labels, "-o", default, "--quiet")
    assert from_dataset.read_text() == explicit.read_text()       # the same definition, read back
    assert from_dataset.read_text() != default.read_text()         # and not the defaults

    # a second definition beside --dataset is refused, naming what to drop
    res = srft("view", "--dataset", prefix, "--policy", "naive", "-o", tmp_path / "x.html", check=False)
    assert res.returncode == 2 and "drop --policy" in res.stderr
    assert not (tmp_path / "x.html").exists()

    # a dataset whose tokenizer is not the one found now is refused
    meta_path = Path(f"{prefix}.meta.json")
    meta = json.loads(meta_path.read_text())
    meta["tokenizer"]["vocab_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    res = srft("view", "--dataset", prefix, "-o", tmp_path / "y.html", check=False)
    assert res.returncode == 2 and "not the one the dataset was made with" in res.stderr
