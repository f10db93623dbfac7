"""The resumable writer (partial lines, locks, done ids) and the critic-eval metrics."""

from __future__ import annotations

import json

import pytest

from srft_megatron.cli import main as srft
from srft_megatron.critic.metrics import compare
from srft_megatron.critic.writer import ResumableJsonlWriter
from srft_megatron.errors import InputError
from srft_megatron.trajectory import LabelRecord, StepLabel


def test_writer_resumes_and_cuts_a_partial_last_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    with ResumableJsonlWriter(path) as w:
        w.write({"id": "a", "steps": []})
        w.write({"id": "b", "steps": []})
    with open(path, "ab") as handle:  # a kill in the middle of a write
        handle.write(b'{"id": "c", "ste')
    with ResumableJsonlWriter(path) as w:
        assert w.done_ids == {"a", "b"} and w.repaired_bytes == len(b'{"id": "c", "ste')
        w.write({"id": "c", "steps": []})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]


def test_writer_refuses_a_second_writer_and_reports_bad_lines(tmp_path):
    path = tmp_path / "labels.jsonl"
    with ResumableJsonlWriter(path):
        with pytest.raises(InputError, match="locked"):
            ResumableJsonlWriter(path)
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(InputError, match=r"labels.jsonl:2: malformed JSON"):
        ResumableJsonlWriter(path)


def rec(tid, labels):
    return LabelRecord(tid, [StepLabel(k, lab) for k, lab in enumerate(labels, start=1)])


def test_metrics_match_a_hand_computed_confusion():
    reference = {"t1": rec("t1", ["good", "good", "harmful", "unnecessary"]),
                 "t2": rec("t2", ["good", "harmful", "recover"]),
                 "t3": rec("t3", ["good"]),  # not labelled by the critic
                 "t4": rec("t4", ["good", "good"])}  # different step count
    predicted = {"t1": rec("t1", ["good", "harmful", "harmful", "good"]),
                 "t2": rec("t2", ["good", "good", "recover"]),
                 "t4": rec("t4", ["good"]),
                 "t9": rec("t9", ["good"])}
    result = compare(predicted, reference)
    # pairs (ref, pred): (g,g) (g,h) (h,h) (u,g) (g,g) (h,g) (r,r)
    assert result.steps == 7 and result.trajectories == 2
    assert result.accuracy == pytest.approx(4 / 7)
    per = result.per_label()
    assert per["good"]["precision"] == pytest.approx(2 / 4) and per["good"]["recall"] == pytest.approx(2 / 3)
    assert per["good"]["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert per["harmful"]["precision"] == pytest.approx(1 / 2) and per["harmful"]["recall"] == pytest.approx(1 / 2)
    assert per["unnecessary"]["f1"] == 0 and per["recover"]["f1"] == 1
    assert result.missing == ["t3"] and result.extra == 1 and len(result.mismatched) == 1
    assert result.confusion["unnecessary"]["good"] == 1


def _write_labels(path, records):
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))


def test_critic_eval_cli(tmp_path, capsys):
    _write_labels(tmp_path / "pred.jsonl", [rec("t1", ["good", "harmful"]), rec("t2", ["recover"])])
    _write_labels(tmp_path / "ref.jsonl", [rec("t1", ["good", "good"]), rec("t2", ["recover"])])
    assert srft(["critic-eval", "--labels", str(tmp_path / "pred.jsonl"), "--reference", str(tmp_path / "ref.jsonl"),
                 "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "accuracy 0.667" in out and "harmful" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["per_label"]["good"]["recall"] == 0.5 and metrics["steps"] == 3
    (tmp_path / "bad.jsonl").write_text('{"id": "t1", "steps": [{"step": 1, "label": "great"}]}\n')
    assert srft(["critic-eval", "--labels", str(tmp_path / "bad.jsonl"), "--reference", str(tmp_path / "ref.jsonl")]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_critic_eval_rejects_bad_bytes_and_odd_lines_and_scores_the_rest(tmp_path, capsys):
    _write_labels(tmp_path / "ref.jsonl", [rec("t1", ["good", "good"]), rec("t2", ["recover"])])
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(json.dumps(rec("t1", ["good", "harmful"]).to_json()).encode() + b"\n"
                     + b'{"id": "t2", "steps": "\xff"}\n' + b"[1]\n")
    assert srft(["critic-eval", "--labels", str(pred), "--reference", str(tmp_path / "ref.jsonl"),
                 "--json", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    assert f"rejected: {pred}:2: invalid UTF-8" in captured.err and f"{pred}:3" in captured.err
    assert "rejected 2 bad lines" in captured.out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["steps"] == 2 and [(r["line"], r["file"]) for r in metrics["rejected"]] == [(2, str(pred)), (3, str(pred))]
    assert srft(["critic-eval", "--labels", str(pred), "--reference", str(tmp_path / "ref.jsonl"), "--strict"]) == 2
    assert f"{pred}:2" in capsys.readouterr().err
