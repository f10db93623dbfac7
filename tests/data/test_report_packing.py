"""`srft report PREFIX --seq-length N [--json FILE]`: the packing training would get at N, from the
packing function itself, on a dataset preprocessed from the examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srft_megatron.dataset import open_dataset
from tests.conftest import ROOT
from tests.data.conftest import srft

EXAMPLES = ROOT / "examples"
SEQ = 8192


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    srft("ingest", *sorted((EXAMPLES / "trajectories").glob("*.traj")), "-o", d / "t.jsonl", "--quiet")
    srft("preprocess", "--trajectories", d / "t.jsonl", "--policy", "naive", "--seq-length", SEQ,
         "--output-prefix", d / "ds", "--quiet")
    return d / "ds"


def test_report_json_file_holds_the_packing_and_everything_printed(prefix, tmp_path):
    out = tmp_path / "report.json"
    proc = srft("report", prefix, "--seq-length", 4096, "--json", out)
    assert "utilisation" in proc.stdout and "samples per epoch" in proc.stdout  # the tables are printed too
    written = json.loads(out.read_text())
    printed = json.loads(srft("report", prefix, "--seq-length", 4096, "--json").stdout)
    assert written == printed
    assert {k: v for k, v in written.items() if k != "packing"} == json.loads(srft("report", prefix, "--json").stdout)

    # independently: the positions of the documents, the samples they need at least, the ratio
    ds = open_dataset(prefix)  # keep it alive: sequence_lengths is a view of its mmap
    lengths = np.array(ds.tokens.sequence_lengths, dtype=np.int64)
    packing = written["packing"]
    positions = int((lengths - 1).sum())
    assert packing["seq_length"] == 4096
    assert -(-positions // 4096) <= packing["samples"] <= len(lengths)
    assert packing["utilisation"] == pytest.approx(positions / (packing["samples"] * 4096), abs=1e-6)


def test_report_refuses_a_length_a_document_cannot_fit_in(prefix):
    longest = max(d["tokens"] for d in json.loads((prefix.parent / "ds.meta.json").read_text())["documents"])
    res = srft("report", prefix, "--seq-length", longest - 2, check=False)
    assert res.returncode == 2 and f"more than --seq-length + 1 = {longest - 1}" in res.stderr
    assert "trajectory datekit-" in res.stderr and len(res.stderr.strip().splitlines()) == 1
