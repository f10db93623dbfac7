"""The evaluation loop on the bundled examples, end to end on CPU (issue 17's second test):
`srft evaluate --profile swe-smith` runs mini-swe-agent (local environment, no Docker) on the
examples' repository against a tiny model on vLLM CPU (the session server, no new start-up), the
instance's hidden tests decide `resolved` as the harness would (the patch on a clean checkout,
then the tests), and `srft ingest` of the rollout then `srft preprocess --profile swe-smith` make
it training data with the policy's weights. The tiny model solves nothing: an unresolved rollout
carried correctly is the outcome. The endpoint is given with a password in it (issue 14): no file
under the run directory holds it, the agent still reached the server (litellm took the URL from
its environment)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest

from srft_megatron.agent_profile import load_agent_profile
from srft_megatron.dataset import open_labels
from srft_megatron.evaluate.local_env import init_repo
from srft_megatron.evaluate.scaffold_check import problem_statement, read_recorded
from tests.conftest import QWEN_TOKENIZER_SERVED
from tests.evaluate.conftest import ROOT, srft
from tests.evaluate.test_eval_pipeline import _instance

SECRET = "pa55-w0rd-never-in-a-file"
INSTANCE = "datekit-1"


@pytest.mark.slow
@pytest.mark.vllm
def test_evaluate_hidden_tests_ingest_preprocess_on_the_examples(agent_python, qwen_tokenizer_server, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    import build_examples

    example = ROOT / "examples" / "trajectories" / f"{INSTANCE}__clean.traj"
    recorded, raw = read_recorded(example)
    statement = problem_statement(raw, example)
    dataset = tmp_path / "instances.jsonl"
    dataset.write_text(json.dumps(_instance(INSTANCE, statement)) + "\n")
    checkout = init_repo(ROOT / "examples" / "datekit", tmp_path / "checkout")
    parts = urlsplit(qwen_tokenizer_server.url)
    endpoint = urlunsplit(parts._replace(netloc=f"evaluser:{SECRET}@{parts.netloc}"))
    run = tmp_path / "eval"
    srft("evaluate", "--endpoint", endpoint, "--served-name", QWEN_TOKENIZER_SERVED, "--subset", dataset,
         "--rollouts", "1", "--output", run, "--profile", "swe-smith", "--environment", "local",
         "--agent-set", f"environment.cwd={checkout}", "--agent-set", "agent.step_limit=2", "--max-tokens", "24",
         "--agent-workers", "1", "--harness", "skip")

    # the secret: in no file of the run (settings, overlay, profile, logs, trajectories, predictions)
    written = [p for p in run.rglob("*") if p.is_file()]
    assert len(written) >= 5
    assert [p for p in written if SECRET.encode() in p.read_bytes()] == []
    assert json.loads((run / "eval.json").read_text())["endpoint"] == f"http://***@{parts.netloc}/v1"

    # the agent ran in the swe-smith scaffold against that server
    agent_dir = run / "rollout-01" / "agent"
    traj = json.loads((agent_dir / INSTANCE / f"{INSTANCE}.traj.json").read_text())
    profile = load_agent_profile("swe-smith")
    assert traj["messages"][0]["content"] == profile.fill("system_template", problem_statement=statement)
    assert traj["messages"][1]["content"] == profile.fill("instance_template", problem_statement=statement)
    replies = [m for m in traj["messages"] if m["role"] == "assistant"]
    assert traj["info"]["model_stats"]["api_calls"] == len(replies) == 2
    assert {m["extra"]["response"]["model"] for m in replies} == {QWEN_TOKENIZER_SERVED}
    assert not any(m.get("tool_calls") for m in replies)  # xml: the calls are in the text

    # the hidden tests decide, as the harness would: they pass the recorded fix, not the rollout's patch
    patch = json.loads((agent_dir / "preds.json").read_text())[INSTANCE]["model_patch"] or ""
    assert build_examples.hidden_tests_pass(raw["info"]["submission"], INSTANCE)
    resolved = build_examples.hidden_tests_pass(patch, INSTANCE)
    assert resolved is False
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"resolved_ids": [], "unresolved_ids": [INSTANCE]}))

    # the rollout becomes training data: unresolved, its steps weighted by the srft policy
    srft("ingest", *agent_dir.glob("*/*.traj.json"), "--resolved", report, "-o", tmp_path / "t.jsonl", "--quiet")
    (row,) = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert row["resolved"] is False and row["instance_id"] == INSTANCE
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"id": row["id"], "critic": {"model": "by hand"}, "steps": [
        {"step": 1, "label": "harmful", "confidence": None}, {"step": 2, "label": "good", "confidence": None}]}) + "\n")
    prefix = tmp_path / "data" / "srft"
    srft("preprocess", "--trajectories", tmp_path / "t.jsonl", "--labels", labels, "--policy", "srft",
         "--profile", "swe-smith", "--seq-length", 8192, "--output-prefix", prefix, "--quiet")
    meta = json.loads(Path(f"{prefix}.meta.json").read_text())
    assert meta["render"] == "xml" and meta["counts"]["documents"] == 1
    assert meta["counts"]["kept_steps"]["unresolved"] == 1  # srft: the harmful step of an unresolved run is out
    codes = np.asarray(open_labels(str(prefix))[0])
    kinds = {name: int((codes == code).sum()) for name, code in meta["label_codes"].items()}
    assert kinds["harmful"] > 0 and kinds["good"] > 0 and meta["counts"]["weighted_tokens"] == kinds["good"]
