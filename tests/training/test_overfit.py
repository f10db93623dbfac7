"""The whole path learns: ingest -> preprocess (real Qwen2.5 tokenizer) -> srft train.

A tiny model is trained 80 steps (one document a step, ~20 epochs) on the tokenised example trajectories in
../shared/data/trajectories and must drive the weighted loss far down (overfitting a handful
of documents). To keep it CPU-cheap the token ids of the dataset are renumbered densely
(`compact_vocabulary`: same documents, same weights, ~2k distinct ids instead of 151,936
embedding rows), which changes nothing the test is about."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from srft_megatron.dataset import DatasetWriter, open_dataset
from srft_megatron.model.configs import get_shape
from srft_megatron.parallel.dims import destroy
from srft_megatron.training.config import load_config
from srft_megatron.training.trainer import Trainer

from .helpers import ROOT, TINY_CONFIG, read_metrics

pytestmark = pytest.mark.usefixtures("cpu_shim")  # megatron-core in this process (conftest)

SEQ = 2048


def compact_vocabulary(src: str, dst, multiple: int = 128) -> int:
    """Rewrite a dataset with its token ids renumbered 1..U; return the padded vocab size."""
    docs = open_dataset(src)
    ids = np.unique(np.concatenate([docs.document(i)[0] for i in range(len(docs))]))
    remap = {int(t): i + 1 for i, t in enumerate(ids)}
    with DatasetWriter(dst) as writer:
        for i in range(len(docs)):
            tok, w = docs.document(i)
            writer.add(np.array([remap[int(t)] for t in tok], dtype=np.int32), np.array(w))
        vocab = -(-(len(ids) + 1) // multiple) * multiple
        # the ids are no longer the tokenizer's: say so, or training refuses a 151,665-token
        # tokenizer on a model of `vocab` rows
        tokenizer = {**docs.meta["tokenizer"], "name": "qwen2.5 (renumbered)", "vocab_size": vocab}
        writer.commit({**docs.meta, "tokenizer": tokenizer,
                       "note": "token ids renumbered densely for a CPU overfit test"})
    return vocab


@pytest.mark.slow
def test_tiny_model_overfits_example_trajectories(traj_files, tmp_path):
    srft = str(ROOT / ".venv" / "bin" / "srft")
    subprocess.run([srft, "ingest", *map(str, traj_files), "-o", str(tmp_path / "t.jsonl")],
                   check=True, capture_output=True)
    subprocess.run([srft, "preprocess", "--trajectories", str(tmp_path / "t.jsonl"), "--policy", "naive",
                    "--tokenizer", "qwen2.5", "--seq-length", str(SEQ), "--overlong", "cut",
                    "--output-prefix", str(tmp_path / "naive"), "--quiet"], check=True, capture_output=True)
    meta = json.loads((tmp_path / "naive.meta.json").read_text())
    assert meta["counts"]["documents"] >= 3 and meta["counts"]["weighted_tokens"] > 500

    vocab = compact_vocabulary(str(tmp_path / "naive"), tmp_path / "compact")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shape = get_shape("tiny").replace(vocab_size=vocab, max_position_embeddings=SEQ)
    (model_dir / "config.json").write_text(json.dumps(shape.to_hf_config(torch_dtype="float32")))

    steps = 80
    cfg = load_config(TINY_CONFIG, [f"model.name={model_dir}", f"model.seq_length={SEQ}",
                                    f"data.prefixes=[{tmp_path / 'compact'}]", f"train.steps={steps}",
                                    "train.global_batch_size=1", "train.micro_batch_size=1",
                                    "optimizer.lr=1e-2", "optimizer.min_lr=1e-3", "optimizer.warmup_steps=5",
                                    "logging.tensorboard=false", "checkpoint.save_on_exit=false"])
    try:
        assert Trainer(cfg, tmp_path / "run").train() == 0
    finally:
        destroy(process_group=True)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run")]
    assert len(losses) == steps
    first, last = np.mean(losses[:meta["counts"]["documents"]]), np.mean(losses[-meta["counts"]["documents"]:])
    assert first > 0.8 * np.log(vocab)       # starts near chance
    assert last < 0.4 * first, (first, last)  # and learns the documents (measured ~0.15-0.2 at 80 steps)
