"""The whole path learns, and SRFT does what it claims, on the labelled examples of examples/:
ingest (with their resolution) -> preprocess (real Qwen2.5 tokenizer, expert labels) -> srft train.

A tiny model is trained on the 8 example trajectories (one document a step, ~10 epochs) twice,
once per policy, with per-label validation (training/evaluation.py) on those same documents
(there are too few to hold some out: the test is about what training does to each kind of step
it sees). `naive` trains every step; `srft` trains every step but the harmful ones of unresolved
trajectories (733 of the 980 harmful tokens left in context, weight 0). Asserted:
- naive drives the weighted loss far down (overfitting a handful of documents);
- the gap harmful NLL - good NLL opens under srft (good steps learnt, harmful ones not followed)
  and opens much less under naive, which learns harmful steps like the others. Measured at 56
  steps (7 epochs), NLL good / harmful from 6.93 / 6.93: srft 2.86 / 3.95 (gap +1.09 nats),
  naive 2.88 / 3.21 (+0.33: harmful steps are rarer, more idiosyncratic actions, so even when
  trained they lag a little; the method's effect is the difference, 3x).
To keep it CPU-cheap the token ids are renumbered densely (`compact_vocabulary`: same documents,
weights and labels, ~2k distinct ids instead of 151,936 embedding rows), which changes nothing the
test is about."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from srft_megatron.dataset import DatasetWriter, open_dataset, open_labels
from srft_megatron.model.configs import get_shape
from srft_megatron.parallel.dims import destroy
from srft_megatron.training.config import load_config
from srft_megatron.training.metrics import is_eval_record
from srft_megatron.training.trainer import Trainer

from .helpers import ROOT, TINY_CONFIG, read_metrics

pytestmark = pytest.mark.usefixtures("cpu_shim")  # megatron-core in this process (conftest)

SEQ = 2048
EXAMPLES = ROOT / "examples"


def compact_vocabulary(src: str, dst, multiple: int = 128, ids: np.ndarray | None = None) -> int:
    """Rewrite a dataset (with its label channel) with its token ids renumbered 1..U (U = the
    distinct ids of `ids`, default its own); return the padded vocab size."""
    docs, labels = open_dataset(src), open_labels(src)
    if ids is None:
        ids = np.unique(np.concatenate([docs.document(i)[0] for i in range(len(docs))]))
    remap = {int(t): i + 1 for i, t in enumerate(ids)}
    with DatasetWriter(dst, with_labels=True) as writer:
        for i in range(len(docs)):
            tok, w = docs.document(i)
            writer.add(np.array([remap[int(t)] for t in tok], dtype=np.int32), np.array(w), labels[i])
        vocab = -(-(len(ids) + 1) // multiple) * multiple
        # the ids are no longer the tokenizer's: say so, or training refuses a 151,665-token
        # tokenizer on a model of `vocab` rows
        tokenizer = {**docs.meta["tokenizer"], "name": "qwen2.5 (renumbered)", "vocab_size": vocab}
        writer.commit({**docs.meta, "tokenizer": tokenizer,
                       "note": "token ids renumbered densely for a CPU overfit test"})
    return vocab


STEPS = 56


def _train(tmp_path, model_dir, prefix, name: str) -> list[dict]:
    """Train STEPS steps on `prefix`, validating on it before the first step and at the end."""
    cfg = load_config(TINY_CONFIG, [f"model.name={model_dir}", f"model.seq_length={SEQ}",
                                    f"data.prefixes=[{prefix}]", f"data.validation_prefixes=[{prefix}]",
                                    f"train.steps={STEPS}", f"train.eval_interval={STEPS}", "train.eval_samples=8",
                                    "train.global_batch_size=1", "train.micro_batch_size=1",
                                    "optimizer.lr=1e-2", "optimizer.min_lr=1e-3", "optimizer.warmup_steps=5",
                                    "logging.tensorboard=false", "checkpoint.save_on_exit=false"])
    try:
        assert Trainer(cfg, tmp_path / name).train() == 0
    finally:
        destroy(process_group=True)
    return read_metrics(tmp_path / name)


def _gap(record: dict) -> float:
    return record["val/nll/harmful"] - record["val/nll/good"]


@pytest.mark.slow
def test_tiny_model_overfits_examples_and_srft_opens_the_good_harmful_gap(tmp_path):
    srft = str(ROOT / ".venv" / "bin" / "srft")
    subprocess.run([srft, "ingest", *map(str, sorted((EXAMPLES / "trajectories").glob("*.traj"))),
                    "--resolved", str(EXAMPLES / "resolved.jsonl"), "-o", str(tmp_path / "t.jsonl")],
                   check=True, capture_output=True)
    for policy in ("naive", "srft"):
        subprocess.run([srft, "preprocess", "--trajectories", str(tmp_path / "t.jsonl"), "--policy", policy,
                        "--labels", str(EXAMPLES / "labels.jsonl"), "--tokenizer", "qwen2.5",
                        "--seq-length", str(SEQ), "--overlong", "cut", "--output-prefix", str(tmp_path / policy),
                        "--quiet"], check=True, capture_output=True)
    meta = json.loads((tmp_path / "srft.meta.json").read_text())
    n_docs = meta["counts"]["documents"]
    assert n_docs == 8 and meta["counts"]["label_tokens"]["harmful"] > 500

    vocab = compact_vocabulary(str(tmp_path / "naive"), tmp_path / "compact-naive")
    assert compact_vocabulary(str(tmp_path / "srft"), tmp_path / "compact-srft") == vocab  # same tokens
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shape = get_shape("tiny").replace(vocab_size=vocab, max_position_embeddings=SEQ)
    (model_dir / "config.json").write_text(json.dumps(shape.to_hf_config(torch_dtype="float32")))

    runs = {policy: _train(tmp_path, model_dir, tmp_path / f"compact-{policy}", policy) for policy in ("naive", "srft")}
    losses = [m["loss"] for m in runs["naive"] if not is_eval_record(m)]
    assert len(losses) == STEPS
    first, last = np.mean(losses[:n_docs]), np.mean(losses[-n_docs:])
    assert first > 0.8 * np.log(vocab)       # starts near chance
    assert last < 0.5 * first, (first, last)  # and learns the documents (measured 0.44 at 56 steps, 0.3 at 80)
    evals = {policy: [m for m in run if is_eval_record(m)] for policy, run in runs.items()}
    assert [m["step"] for m in evals["srft"]] == [m["step"] for m in evals["naive"]] == [0, STEPS]
    before, after = evals["srft"]
    assert after["val/nll/good"] < 0.5 * before["val/nll/good"]    # kept steps learnt
    assert after["val/nll/harmful"] > after["val/nll/good"]        # harmful ones stay above them
    opened = {p: _gap(ev[1]) - _gap(ev[0]) for p, ev in evals.items()}
    assert opened["srft"] > 0.7, opened                    # measured 1.09 nats (1.33 at 80 steps)
    assert opened["naive"] < 0.5 * opened["srft"], opened  # measured 0.33 (0.22 at 80 steps)
