"""`srft preprocess` end to end on the real trajectories: datasets, metadata, rejects, atomicity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srft_megatron.dataset import open_dataset, read_meta, shifted_example
from srft_megatron.trajectory import LABELS
from tests.data.conftest import run_srft, srft, write_jsonl
from tests.data.test_spans import expected_step_text, synthetic_labels


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, trajectories):
    """Trajectories with alternating resolved status and synthetic labels for every step."""
    d = tmp_path_factory.mktemp("labelled")
    trajs = []
    for i, t in enumerate(trajectories):
        t = type(t).from_json(t.to_json())
        t.resolved = i % 2 == 0
        trajs.append(t)
    tpath = write_jsonl(d / "t.jsonl", [t.to_json() for t in trajs])
    lpath = write_jsonl(d / "l.jsonl", [synthetic_labels(t).to_json() for t in trajs])
    return trajs, tpath, lpath


@pytest.fixture(scope="module")
def srft_dataset(labelled, tmp_path_factory):
    trajs, tpath, lpath = labelled
    prefix = tmp_path_factory.mktemp("ds") / "srft"
    run_srft("preprocess", "--trajectories", tpath, "--labels", lpath, "--policy", "srft", "--tokenizer", "qwen2.5",
             "--seq-length", 32768, "--output-prefix", prefix, "--workers", 2, "--quiet")
    return trajs, prefix


def test_dataset_matches_an_independent_count(srft_dataset, tokenizer):
    trajs, prefix = srft_dataset
    ds = open_dataset(prefix)
    meta = ds.meta
    assert len(ds) == len(trajs) == meta["counts"]["documents"]
    expect_steps = {s: {lab: 0 for lab in (*LABELS, "unlabelled")} for s in ("resolved", "unresolved", "unknown")}
    kept = rejected = 0
    weighted_total = 0
    for index, traj in enumerate(trajs):
        tokens, weights = ds.document(index)
        assert tokens.dtype == np.int32 and weights.dtype == np.float32 and tokens.shape == weights.shape
        assert meta["documents"][index]["id"] == traj.id
        steps = [m for m in traj.messages if m["role"] == "assistant"]
        labels = synthetic_labels(traj).steps
        expected_weighted = 0
        for msg, lab in zip(steps, labels):
            expect_steps["resolved" if traj.resolved else "unresolved"][lab.label] += 1
            masked = lab.label == "harmful" and not traj.resolved
            kept += not masked
            rejected += masked
            if not masked:
                expected_weighted += len(tokenizer(expected_step_text(msg, "tools"), add_special_tokens=False)["input_ids"])
        assert float(weights.sum()) == expected_weighted, traj.id
        weighted_total += expected_weighted
        # the weight-1 tokens are exactly the kept steps' text
        trained = tokenizer.decode(tokens[weights > 0])
        assert trained == "".join(expected_step_text(m, "tools") for m, lab in zip(steps, labels)
                                  if not (lab.label == "harmful" and not traj.resolved))
    counts = meta["counts"]
    assert counts["steps_by_label"] == expect_steps
    assert sum(counts["kept_steps"].values()) == kept and sum(counts["rejected_steps"].values()) == rejected
    assert counts["weighted_tokens"] == weighted_total
    assert counts["tokens"] == int(sum(len(ds.document(i)[0]) for i in range(len(ds))))
    assert meta["tokenizer"]["name"] == "qwen2.5" and meta["tokenizer"]["vocab_size"] == 151665
    assert meta["policy"]["name"] == "srft" and meta["format_version"] == 1


def test_report_prints_the_same_numbers(srft_dataset):
    _, prefix = srft_dataset
    summary = json.loads(srft("report", prefix, "--json").stdout)
    meta = read_meta(prefix)
    assert summary["documents"] == meta["counts"]["documents"]
    assert summary["steps_by_label"] == meta["counts"]["steps_by_label"]
    assert summary["weighted_fraction"] == pytest.approx(meta["counts"]["weighted_tokens"] / meta["counts"]["tokens"])
    table = srft("report", prefix).stdout
    assert "Steps by label" in table and "harmful" in table and "weighted fraction" in table


def test_shifted_example_keeps_tokens_and_weights_aligned(srft_dataset):
    _, prefix = srft_dataset
    tokens, weights = open_dataset(prefix).document(0)
    ex = shifted_example(tokens, weights)
    assert np.array_equal(ex["labels"], tokens[1:]) and np.array_equal(ex["tokens"], tokens[:-1])
    assert np.array_equal(ex["loss_weights"], weights[1:])
    # the label at a weighted position is a token of a kept step: the last one is <|im_end|>
    last = np.nonzero(ex["loss_weights"])[0][-1]
    assert ex["labels"][last] == 151645


def test_one_worker_and_two_workers_write_identical_files(labelled, srft_dataset, tmp_path):
    _, tpath, lpath = labelled
    _, prefix2 = srft_dataset
    prefix1 = tmp_path / "one"
    srft("preprocess", "--trajectories", tpath, "--labels", lpath, "--policy", "srft",
             "--seq-length", 32768, "--output-prefix", prefix1, "--quiet")
    for suffix in ("_tokens.bin", "_tokens.idx", "_weights.bin", "_weights.idx"):
        assert (tmp_path / f"one{suffix}").read_bytes() == open(f"{prefix2}{suffix}", "rb").read()


def test_overlong_trajectories_are_cut_at_a_step_boundary_or_dropped(labelled, tmp_path, tokenizer):
    trajs, tpath, _ = labelled
    srft("preprocess", "--trajectories", tpath, "--policy", "naive", "--seq-length", 4096,
             "--output-prefix", tmp_path / "cut", "--quiet")
    ds = open_dataset(tmp_path / "cut")
    meta = ds.meta
    assert meta["counts"]["truncated"] > 0
    for index, doc in enumerate(meta["documents"]):
        tokens, weights = ds.document(index)
        assert len(tokens) <= 4097
        if doc["steps_cut"]:
            assert tokens[-1] == 151645 and weights[-1] == 1.0  # cut right after a step's <|im_end|>
    cut_docs = [d for d in meta["documents"] if d["steps_cut"]]
    assert cut_docs and all(d["tokens"] <= 4097 for d in cut_docs)
    srft("preprocess", "--trajectories", tpath, "--policy", "naive", "--seq-length", 4096,
             "--overlong", "drop", "--output-prefix", tmp_path / "drop", "--quiet")
    dropped = read_meta(tmp_path / "drop")["counts"]
    assert dropped["truncated"] == 0
    assert dropped["documents"] + sum(dropped["skipped"].values()) == len(trajs)
    assert dropped["skipped"]["longer than seq-length (dropped)"] >= len(cut_docs)


def test_rft_skips_unresolved_trajectories_and_counts_them(labelled, tmp_path):
    trajs, tpath, _ = labelled
    srft("preprocess", "--trajectories", tpath, "--policy", "rft", "--seq-length", 32768,
             "--output-prefix", tmp_path / "rft", "--quiet")
    meta = read_meta(tmp_path / "rft")
    assert [d["id"] for d in meta["documents"]] == [t.id for t in trajs if t.resolved]
    assert meta["counts"]["skipped"] == {"no trained tokens under policy rft": sum(not t.resolved for t in trajs)}


def test_bad_labels_are_rejected_with_reasons_and_counted(labelled, tmp_path):
    trajs, tpath, lpath = labelled
    rows = [json.loads(line) for line in lpath.read_text().splitlines()]
    unresolved = [i for i, t in enumerate(trajs) if not t.resolved]
    rows[unresolved[0]]["steps"][0]["label"] = "excellent"        # unknown label
    rows[unresolved[1]]["steps"] = rows[unresolved[1]]["steps"][:-1]  # one label short
    del rows[unresolved[2]]                                        # unresolved without labels
    bad = write_jsonl(tmp_path / "bad_labels.jsonl", rows)
    with open(bad, "a") as handle:
        handle.write("{not json\n")
    prefix = tmp_path / "ds"
    proc = srft("preprocess", "--trajectories", tpath, "--labels", bad, "--policy", "srft",
                    "--seq-length", 32768, "--output-prefix", prefix, "--quiet")
    rejects = [json.loads(line) for line in (tmp_path / "ds.rejects.jsonl").read_text().splitlines()]
    reasons = sorted(r["reason"].split(" (")[0] for r in rejects)
    assert len(rejects) == 4, reasons
    unknown = next(r for r in rejects if "unknown label" in r["reason"])
    assert unknown["id"] == trajs[unresolved[0]].id and unknown["step"] == 1 and unknown["file"] == str(bad)
    short = next(r for r in rejects if "labels for" in r["reason"] and "steps" in r["reason"])
    assert short["id"] == trajs[unresolved[1]].id and short["file"] == str(bad) and short["line"] >= 1
    missing = next(r for r in rejects if "no labels" in r["reason"])
    assert missing["id"] == trajs[unresolved[2]].id
    assert any("malformed JSON" in r["reason"] and r["line"] == len(rows) + 1 for r in rejects)
    meta = read_meta(prefix)
    assert sum(meta["counts"]["rejected"].values()) == 4
    assert meta["counts"]["documents"] == len(trajs) - 3
    assert "rejected 4" in proc.stdout


def test_strict_failure_leaves_the_previous_dataset_untouched(labelled, tmp_path):
    trajs, tpath, lpath = labelled
    prefix = tmp_path / "ds"
    srft("preprocess", "--trajectories", tpath, "--policy", "naive", "--seq-length", 32768,
             "--output-prefix", prefix, "--quiet")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("ds")}
    rows = [json.loads(line) for line in lpath.read_text().splitlines()]
    rows[-1]["steps"][0]["label"] = "excellent"
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    proc = srft("preprocess", "--trajectories", tpath, "--labels", bad, "--policy", "srft", "--seq-length",
                    32768, "--output-prefix", prefix, "--strict", "--quiet", check=False)
    assert proc.returncode == 2
    assert "unknown label 'excellent'" in proc.stderr and trajs[-1].id in proc.stderr and "step 1" in proc.stderr
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("ds")}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_interrupted_run_leaves_no_dataset(labelled, tmp_path):
    """A run killed mid-way (SIGKILL while workers are busy) leaves no dataset files at PREFIX."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    _, tpath, _ = labelled
    big = tmp_path / "big.jsonl"
    rows = [json.loads(line) for line in tpath.read_text().splitlines()]
    write_jsonl(big, [dict(r, id=f"{r['id']}-{i}") for i in range(40) for r in rows])
    prefix = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-m", "srft_megatron.cli", "preprocess", "--trajectories", str(big),
                             "--policy", "naive", "--seq-length", "32768", "--output-prefix", str(prefix)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]:
        time.sleep(0.2)  # wait until it is writing
    time.sleep(1.0)
    os_killpg = __import__("os").killpg
    os_killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any(p.name.startswith("ds") for p in tmp_path.iterdir())
