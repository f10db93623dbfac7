"""Validation during training (training/evaluation.py): the numbers equal a by-hand PyTorch
computation on the same batch, the held-out split is a partition of the documents, the config
is checked up front, and the per-step memory / MFU keys are written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srft_megatron.dataset import LABEL_CODES
from srft_megatron.errors import ConfigError
from srft_megatron.parallel.dims import destroy
from srft_megatron.training.config import load_config
from srft_megatron.training.preflight import validate
from srft_megatron.training.data import (assemble_sample, block_causal_mask, build_train_dataset, collate,
                                         held_out_documents)
from srft_megatron.training.evaluation import validation_samples, validation_sources
from srft_megatron.training.metrics import MetricsWriter, is_eval_record
from srft_megatron.training.trainer import Trainer

from .helpers import TINY_CONFIG, make_dataset, read_metrics

pytestmark = pytest.mark.usefixtures("cpu_shim")  # megatron-core in this process (conftest)

EVAL = ["train.eval_interval=1", "train.eval_samples=6", "train.micro_batch_size=2",
        "train.global_batch_size=4", "model.seq_length=64", "logging.tensorboard=false",
        "checkpoint.save_on_exit=false"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("eval") / "labelled", n_docs=30, max_len=50, labels=True)


def test_validation_fraction_is_a_seeded_partition_of_the_documents(labelled):
    held = held_out_documents(30, 0.2, 1234)
    assert len(held) == 6 and len(set(held.tolist())) == 6
    assert np.array_equal(held, held_out_documents(30, 0.2, 1234))       # deterministic in the seed
    assert not np.array_equal(held, held_out_documents(30, 0.2, 99))     # and moved by it
    ds = build_train_dataset([str(labelled)], None, seq_length=64, num_samples=40, seed=1234,
                             held_out_fraction=0.2)
    counts = np.bincount(ds.order, minlength=30)
    trained = set(np.nonzero(counts)[0].tolist())
    assert trained.isdisjoint(held.tolist()) and trained | set(held.tolist()) == set(range(30))
    assert len(set(counts[list(trained)].tolist())) == 1  # whole epochs: every trained document equally often
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{labelled}]", "data.validation_fraction=0.2"])
    (source,) = validation_sources(cfg.data)
    assert np.array_equal(source.doc_ids, held)
    samples = validation_samples([source], seq_length=64, num_samples=8, seed=1234)
    evaluated = [d for s in samples for d in range(len(s["doc_lengths"]))]
    assert sum(int(s["num_real_tokens"]) for s in samples) == sum(
        len(source.docs.document(int(d))[0]) - 1 for d in held)  # every held-out document, once
    assert evaluated
    # the codes ride with the loss weights: those of the *predicted* tokens (dataset.shifted_example)
    a, b = (int(d) for d in held[:2])
    sample = assemble_sample(source.docs, [a, b], 128, labels=source.labels)
    n = len(source.docs.document(a)[0]) - 1
    assert np.array_equal(sample["label_codes"][:n], source.labels[a][1:])
    assert np.array_equal(sample["label_codes"][n:n + len(source.labels[b]) - 1], source.labels[b][1:])
    assert (sample["label_codes"][int(sample["num_real_tokens"]):] == -1).all()


def _by_hand(model, samples) -> dict[str, float]:
    """val/loss, val/nll/<label>, val/nll/(un)resolved from full logits and torch's cross-entropy."""
    from srft_megatron.training.label_nll import RESOLVED_CODES

    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collate(samples).items()}
    with torch.no_grad():
        logits = model(batch["tokens"], batch["position_ids"], block_causal_mask(batch["segment_ids"]))
    nll = torch.nn.functional.cross_entropy(logits.double().flatten(0, 1), batch["labels"].flatten(),
                                            reduction="none")
    codes, w = batch["label_codes"].flatten(), batch["loss_weights"].double().flatten()
    resolved = batch["resolved"].flatten()
    real = codes >= 0
    out = {"val/loss": float((nll * w)[real].sum() / w[real].sum())}
    for label, code in LABEL_CODES.items():
        if label != "context" and (codes == code).any():
            out[f"val/nll/{label}"] = float(nll[codes == code].mean())
    step = real & (codes != LABEL_CODES["context"])
    for name in ("resolved", "unresolved"):
        if (step & (resolved == RESOLVED_CODES[name])).any():
            out[f"val/nll/{name}"] = float(nll[step & (resolved == RESOLVED_CODES[name])].mean())
    return out


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_eval_equals_pytorch_by_hand_and_steps_report_memory_and_mfu(labelled, tmp_path, device):
    # on CUDA: the local spec (the by-hand reference uses its block-diagonal mask), CUDA peak memory
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{labelled}]", "data.validation_fraction=0.2",
                                    "train.steps=2", "logging.peak_tflops_per_gpu=2.5", *EVAL,
                                    *(["model.use_te=false"] if device == "cuda" else [])])
    try:
        trainer = Trainer(cfg, tmp_path / "run")
        assert trainer.train() == 0
        records = read_metrics(tmp_path / "run")
        evals = [r for r in records if is_eval_record(r)]
        steps = [r for r in records if not is_eval_record(r)]
        assert [r["step"] for r in evals] == [0, 1, 2] and [r["step"] for r in steps] == [1, 2]
        samples = validation_samples(validation_sources(cfg.data), seq_length=64, num_samples=6, seed=1234)
        expected = _by_hand(trainer.model[0].module, samples)
        got = evals[-1]
        assert int(samples[-1]["num_real_tokens"]) == 0  # fewer real samples than eval_samples: padding
        assert {"val/nll/resolved", "val/nll/unresolved", "val/nll/harmful"} <= set(expected)
        assert {k for k in got if k.startswith("val/nll/") or k == "val/loss"} == set(expected)
        for key, value in expected.items():
            assert abs(got[key] - value) <= 1e-5, (key, got[key], value)
        assert evals[0]["val/nll/good"] != got["val/nll/good"]  # the model moved between evals
        # the eval of the last weights is what an eval now gives (no state left behind by training)
        again = trainer._evaluate(MetricsWriter(tmp_path, enabled=False))
        assert all(abs(again[k] - got[k]) <= 1e-9 for k in expected)
    finally:
        destroy(process_group=True)
    for r in steps:
        if device == "cpu":
            assert r["memory_kind"] == "cpu_max_rss" and 0.05 < r["peak_memory_gb"] < 200
        else:
            assert r["memory_kind"] == "cuda_max_allocated" and 0 < r["peak_memory_gb"] < 200
        assert r["mfu"] == pytest.approx(r["tflops_per_gpu"] / 2.5)


@pytest.mark.parametrize("overrides, message", [
    (["data.validation_fraction=1.0"], "must be in [0, 1)"),
    (["train.eval_interval=5"], "needs validation data"),
    (["train.eval_interval=5", "data.validation_fraction=0.1", "train.eval_samples=3",
      "train.micro_batch_size=2"], "multiple of micro_batch_size"),
    (["data.validation_fraction=0.1", "data.validation_prefixes=[x]"], "not both"),
    (["logging.peak_tflops_per_gpu=0"], "peak_tflops_per_gpu"),
    (["train.eval_interval=-1"], "eval_interval must be >= 0"),
    (["train.eval_interval=5", "data.validation_prefixes=[{missing}]"], "data.validation_prefixes"),
    (["train.eval_interval=5", "data.validation_prefixes=[{unlabelled}]"], "no label channel"),
    (["train.eval_interval=5", "data.validation_fraction=0.1"], "no label channel"),  # train data without labels
])
def test_eval_config_is_refused_up_front(tmp_path, overrides, message):
    unlabelled = make_dataset(tmp_path / "plain", n_docs=4)
    overrides = [o.format(missing=tmp_path / "missing", unlabelled=unlabelled) for o in overrides]
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{unlabelled}]", *overrides])
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        validate(cfg, 1)


def test_tensorboard_keeps_the_val_namespace(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = MetricsWriter(tmp_path, enabled=True, tensorboard=True)
    writer.log({"step": 1, "loss": 2.0})
    writer.log({"step": 1, "val/loss": 3.0, "val/nll/good": 1.5})
    writer.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "val/loss", "val/nll/good"} <= set(events.Tags()["scalars"])
    assert events.Scalars("val/nll/good")[0].value == 1.5
