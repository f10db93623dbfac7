"""The bundled examples are what they claim: ingestible SWE-agent trajectories, one expert label
per step, `resolved` decided by the hidden tests, and files that match a rebuild from the
hand-written scenarios (so nobody edits the generated files by hand)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from srft_megatron.trajectory import LABELS, LabelRecord, read_labels, read_trajectories

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
import build_examples  # noqa: E402


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples") / "trajectories.jsonl"
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "ingest",
                           *sorted(str(p) for p in (EXAMPLES / "trajectories").glob("*.traj")),
                           "--resolved", str(EXAMPLES / "resolved.jsonl"), "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return out


def _resolved() -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (EXAMPLES / "resolved.jsonl").read_text().splitlines())}


def test_examples_ingest_and_every_step_has_one_expert_label(ingested):
    trajs = {}
    for line, item in read_trajectories(str(ingested)):
        assert not isinstance(item, Exception), item
        trajs[item.id] = item
    labels, errors = read_labels(str(EXAMPLES / "labels.jsonl"))
    assert errors == []
    assert 6 <= len(trajs) <= 10
    assert set(trajs) == set(labels) == set(_resolved())
    seen = set()
    for tid, traj in trajs.items():
        raw = next(json.loads(l) for l in (EXAMPLES / "labels.jsonl").read_text().splitlines() if json.loads(l)["id"] == tid)
        rec = LabelRecord.from_json(raw, num_steps=traj.num_steps)  # raises on a count mismatch
        assert rec.critic["model"] == "expert"
        assert all(s["reason"].strip() for s in raw["steps"])
        seen.update(s.label for s in rec.steps)
        assert traj.resolved is _resolved()[tid]["resolved"]
        assert traj.instance_id == _resolved()[tid]["instance_id"]
    assert seen == set(LABELS)
    flags = [r["resolved"] for r in _resolved().values()]
    assert any(flags) and not all(flags)


def test_traj_files_have_the_swe_agent_shape():
    for path in sorted((EXAMPLES / "trajectories").glob("*.traj")):
        data = json.loads(path.read_text())
        history = data["history"]
        assert history[0]["message_type"] == "system_prompt" and history[1]["role"] == "user"
        for msg in history[2:]:
            assert msg["agent"] == "main"
            if msg["role"] == "assistant":
                assert msg["message_type"] == "action" and len(msg["tool_calls"]) == 1
                json.loads(msg["tool_calls"][0]["function"]["arguments"])
            else:
                assert msg["role"] == "tool" and len(msg["tool_call_ids"]) == 1
        assert data["info"]["exit_status"].startswith("submitted")
        assert data["info"]["submission"].startswith("diff --git")


@pytest.mark.parametrize("tid", sorted(_resolved()))
def test_resolved_flag_is_what_the_hidden_tests_say(tid):
    data = json.loads((EXAMPLES / "trajectories" / f"{tid}.traj").read_text())
    row = _resolved()[tid]
    assert build_examples.hidden_tests_pass(data["info"]["submission"], row["instance_id"]) is row["resolved"]


def _stable(text: str) -> str:
    """Drop what legitimately differs between two replays: pytest's wall time, tool run times."""
    text = re.sub(r" in \d+\.\d+s", " in <t>s", text)
    return re.sub(r'"execution_time": [0-9.e-]+', '"execution_time": <t>', text)


def test_committed_examples_match_a_rebuild_from_the_scenarios(tmp_path):
    assert build_examples.main(["--output", str(tmp_path)]) == 0
    for name in ("labels.jsonl", "resolved.jsonl"):
        assert (tmp_path / name).read_text() == (EXAMPLES / name).read_text(), name
    built = sorted(p.name for p in (tmp_path / "trajectories").glob("*.traj"))
    assert built == sorted(p.name for p in (EXAMPLES / "trajectories").glob("*.traj"))
    for name in built:
        assert _stable((tmp_path / "trajectories" / name).read_text()) == \
            _stable((EXAMPLES / "trajectories" / name).read_text()), name
