"""Training never learns from garbage in silence (issue 12).

1. Before any process group starts (and with `--check`): a dataset that is empty, whose index or
   metadata disagree with its files, whose token ids exceed the model's vocabulary (TP=1 and
   TP=2) or whose documents are longer than model.seq_length is one line, exit 2, no step.
2. During training: a step that reads non-finite loss weights, or whose loss or gradients are
   not finite, is skipped (megatron-core's found-inf path for the gradients), logged and counted;
   too many in a row stop the run (exit 1); the first steps all empty stop it too; non-finite
   parameters are never saved and `latest` never names them.
3. Checkpoints: a flipped byte, a truncated or a missing file is refused by resume, by
   train.init_from and by `srft convert to-hf`, one line naming the file; non-finite weights are
   refused even with valid checksums.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from srft_megatron import cli
from srft_megatron.dataset import DatasetWriter, check_dataset, dataset_files
from srft_megatron.errors import DatasetError
from srft_megatron.parallel.dims import destroy
from srft_megatron.training.config import load_config
from srft_megatron.training.preflight import validate
from srft_megatron.training.trainer import Trainer

from .helpers import ROOT, TINY_CONFIG, make_dataset, read_metrics

pytestmark = pytest.mark.usefixtures("cpu_shim")  # megatron-core in this process (conftest)

QWEN_TOKENIZER = {"name": "qwen2.5", "vocab_size": 151665}
COMMON = ["train.global_batch_size=8", "train.micro_batch_size=2", "model.seq_length=64",
          "logging.tensorboard=false"]


# ---- helpers ---------------------------------------------------------------------------------
def write_dataset(prefix: Path, docs, **meta) -> Path:
    with DatasetWriter(prefix) as writer:
        for tokens, weights in docs:
            writer.add(np.asarray(tokens, dtype=np.int32), np.asarray(weights, dtype=np.float32))
        writer.commit(meta)
    return prefix


def random_docs(n: int, vocab: int, lengths=(20, 60), seed: int = 0, weighted=lambda i: True):
    rng = np.random.RandomState(seed)
    docs = []
    for i in range(n):
        length = int(rng.randint(*lengths))
        weights = np.zeros(length, dtype=np.float32)
        if weighted(i):
            weights[length // 3:] = 1.0
        docs.append((rng.randint(1, vocab, length), weights))
    return docs


def corrupt_weights(prefix: Path, doc: int, value: float = float("nan")) -> None:
    """Overwrite document `doc`'s loss weights in place (same file size: metadata still agrees)."""
    from srft_megatron.dataset import open_dataset

    ds = open_dataset(prefix)
    offset = int(ds.weights.index.sequence_pointers[doc])
    n = int(ds.weights.sequence_lengths[doc])
    del ds
    with open(dataset_files(prefix)["_weights.bin"], "r+b") as handle:
        handle.seek(offset)
        handle.write(np.full(n, value, dtype=np.float32).tobytes())


def run_cli(capsys, argv):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err.strip().splitlines()


def train_cli(capsys, run_dir, *overrides, check=False):
    argv = ["train", "--config", str(TINY_CONFIG), "--run-dir", str(run_dir), *(["--check"] if check else []),
            *overrides]
    return run_cli(capsys, argv)


def train(run_dir, overrides, trainer_cls=Trainer) -> int:
    cfg = load_config(TINY_CONFIG, overrides)
    try:
        return trainer_cls(cfg, run_dir).train()
    finally:
        destroy(process_group=True)


def checkpoint_tensors(ckpt: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a dist checkpoint, read back with torch.distributed.checkpoint alone."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = ckpt.parent / (ckpt.name + ".pt")
    dcp_to_torch_save(str(ckpt), str(out))
    state = torch.load(out, weights_only=False)
    out.unlink()
    tensors = {}

    def walk(node, key):
        if isinstance(node, torch.Tensor):
            tensors[key] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))

    walk(state, "")
    return tensors


def assert_finite_checkpoint(ckpt: Path) -> None:
    tensors = {k: v for k, v in checkpoint_tensors(ckpt).items() if v.is_floating_point()}
    assert any("embedding" in k for k in tensors) and len(tensors) > 10, sorted(tensors)[:5]
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    assert not bad, bad


# ---- 1. before any process group -------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen_ids_dataset(tmp_path_factory):
    """A dataset tokenised with Qwen2.5's vocabulary (ids up to 151,000)."""
    docs = random_docs(6, 151_000, seed=1)
    return write_dataset(tmp_path_factory.mktemp("qwen") / "qwen", docs, tokenizer=QWEN_TOKENIZER,
                         seq_length=128)


@pytest.mark.parametrize("tp", [1, 2])
def test_vocab_smaller_than_the_token_ids_is_refused(qwen_ids_dataset, tmp_path, capsys, monkeypatch, tp):
    if tp > 1:
        monkeypatch.setenv("WORLD_SIZE", str(tp))  # as every rank under torchrun sees it
    run = tmp_path / "run"
    max_id = check_dataset(qwen_ids_dataset).max_token_id
    for check in (True, False):
        code, _, err = train_cli(capsys, run, f"data.prefixes=[{qwen_ids_dataset}]", "model.name=tiny",
                                 f"parallel.tensor={tp}", *COMMON, check=check)
        assert code == 2 and len(err) == 1, err
        assert f"largest token id {max_id} is not below model.name=tiny's vocabulary of 512 rows" in err[0]
        assert "tokenizer qwen2.5, 151665 tokens" in err[0] and "tiny-qwen-vocab" in err[0]
        assert not dist.is_initialized() and not run.exists()
    # the same data on a model with Qwen2.5's vocabulary passes
    code, _, err = train_cli(capsys, run, f"data.prefixes=[{qwen_ids_dataset}]", "model.name=tiny-qwen-vocab",
                             f"parallel.tensor={tp}", *COMMON, check=True)
    assert code == 0, err


@pytest.mark.distributed
def test_vocab_too_small_under_torchrun_tp2_trains_nothing(qwen_ids_dataset, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m",
         "srft_megatron.cli", "train", "--config", str(TINY_CONFIG), "--run-dir", str(run),
         f"data.prefixes=[{qwen_ids_dataset}]", "model.name=tiny", "parallel.tensor=2", *COMMON],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.startswith("srft train: error: ")]
    assert len(lines) == 2 and all("is not below model.name=tiny's vocabulary of 512" in l for l in lines), \
        proc.stderr[-3000:]
    assert not run.exists()  # no metrics, no checkpoint


def test_documents_longer_than_the_model_sequence_are_refused(tmp_path, capsys):
    # preprocessed at --seq-length 2048: documents up to 600 tokens; trained at 256
    docs = random_docs(8, 512, lengths=(200, 600), seed=2)
    prefix = write_dataset(tmp_path / "long", docs, seq_length=2048)
    longest = max(len(t) for t, _ in docs)
    n_cut = sum(len(t) > 257 for t, _ in docs)
    code, _, err = train_cli(capsys, tmp_path / "run", f"data.prefixes=[{prefix}]", "model.seq_length=256",
                             check=True)
    assert code == 2 and len(err) == 1, err
    assert (f"dataset {prefix} (preprocessed with --seq-length 2048) has documents of up to {longest} tokens, "
            f"longer than model.seq_length=256 + 1: {n_cut} of 8 documents would be cut") in err[0]
    assert "re-run srft preprocess with --seq-length 256, or raise model.seq_length to 2048" in err[0]
    code, _, err = train_cli(capsys, tmp_path / "run", f"data.prefixes=[{prefix}]", "model.seq_length=1024",
                             check=True)
    assert code == 0, err  # every document fits: nothing is cut


def _empty_dataset(tmp_path) -> Path:
    prefix = tmp_path / "empty"
    write_dataset(prefix, [], seq_length=128, counts={"trajectories_in": 3, "skipped": {
        "first step ends beyond seq-length": 3}, "rejected": {}})
    assert dataset_files(prefix)["_tokens.bin"].stat().st_size == 0
    return prefix


def test_empty_dataset_is_one_line_for_train_check_and_report(tmp_path, capsys):
    prefix = _empty_dataset(tmp_path)
    want = f"dataset {prefix} is empty: 0 documents: preprocess kept none of its 3 trajectories"
    for argv in (["train", "--config", str(TINY_CONFIG), "--run-dir", str(tmp_path / "run"), "--check",
                  f"data.prefixes=[{prefix}]"],
                 ["train", "--config", str(TINY_CONFIG), "--run-dir", str(tmp_path / "run"),
                  f"data.prefixes=[{prefix}]"],
                 ["report", str(prefix)]):
        code, _, err = run_cli(capsys, argv)
        assert code == 2 and len(err) == 1 and want in err[0], (argv, err)
        assert "3 first step ends beyond seq-length" in err[0]
    assert not (tmp_path / "run").exists() and not dist.is_initialized()


@pytest.mark.parametrize("what", ["pointer", "length", "header", "weights-meta-size"])
def test_corrupted_index_or_metadata_is_one_line(tmp_path, capsys, what):
    prefix = make_dataset(tmp_path / "ds", n_docs=10)
    idx = dataset_files(prefix)["_tokens.idx"]
    n = check_dataset(prefix).documents
    raw = bytearray(idx.read_bytes())
    if what == "pointer":        # same size, pointer of document 3 overwritten
        raw[34 + 4 * n + 8 * 3: 34 + 4 * n + 8 * 4] = (12345).to_bytes(8, "little")
        needle = "_tokens.idx: document 3 starts at byte 12345"
    elif what == "length":       # same size, length of document 5 changed
        raw[34 + 4 * 5: 34 + 4 * 6] = (7).to_bytes(4, "little")
        needle = "_tokens.idx: document 6 starts at byte"
    elif what == "header":
        raw[0:4] = b"JUNK"
        needle = "_tokens.idx is not a megatron-core index"
    else:
        meta_path = dataset_files(prefix)[".meta.json"]
        meta = json.loads(meta_path.read_text())
        meta["files"]["_weights.bin"] += 4
        meta_path.write_text(json.dumps(meta))
        needle = "_weights.bin has"
    idx.write_bytes(bytes(raw))
    for argv in (["report", str(prefix)],
                 ["train", "--config", str(TINY_CONFIG), "--run-dir", str(tmp_path / "run"), "--check",
                  f"data.prefixes=[{prefix}]"]):
        code, _, err = run_cli(capsys, argv)
        assert code == 2 and len(err) == 1 and needle in err[0] and str(prefix) in err[0], (argv, err)


def test_a_blend_without_weighted_tokens_is_refused(tmp_path, capsys):
    prefix = write_dataset(tmp_path / "masked", random_docs(4, 512, weighted=lambda i: False),
                           policy={"name": "all-masked"})
    code, _, err = train_cli(capsys, tmp_path / "run", f"data.prefixes=[{prefix}]", check=True)
    assert code == 2 and len(err) == 1 and "no dataset of the blend has a weighted token" in err[0], err
    assert "policy all-masked" in err[0]


def test_writer_refuses_non_finite_weights(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        write_dataset(tmp_path / "nan", [([1, 2, 3], [0.0, float("nan"), 1.0])])


def test_checks_before_the_first_step_take_under_a_second_on_10_gb(tmp_path):
    """A 10 GB dataset (sparse .bin files: its size is real, its blocks are not): 300,000
    documents of up to 32,769 tokens, metadata with a record per document as preprocess writes."""
    n_docs, token_bytes = 300_000, 10 * 1024 ** 3
    rng = np.random.RandomState(0)
    total_tokens = token_bytes // 4
    lengths = rng.randint(1000, 17_000, n_docs).astype(np.int64)
    lengths = (lengths * (total_tokens / lengths.sum())).astype(np.int64)
    lengths[: total_tokens - lengths.sum()] += 1  # flooring lost less than one token a document
    assert lengths.max() <= 32_769 and lengths.min() > 0
    prefix = tmp_path / "big"
    files = dataset_files(prefix)
    sizes = {}
    for channel, code in (("tokens", 4), ("weights", 7)):
        pointers = np.concatenate([[0], np.cumsum(lengths)[:-1]]) * 4
        with open(files[f"_{channel}.idx"], "wb") as h:
            h.write(b"MMIDIDX\x00\x00" + (1).to_bytes(8, "little") + bytes([code])
                    + n_docs.to_bytes(8, "little") + (n_docs + 1).to_bytes(8, "little"))
            h.write(lengths.astype(np.int32).tobytes() + pointers.astype(np.int64).tobytes()
                    + np.arange(n_docs + 1, dtype=np.int64).tobytes())
        with open(files[f"_{channel}.bin"], "wb") as h:
            h.truncate(token_bytes)
        sizes[f"_{channel}.idx"] = files[f"_{channel}.idx"].stat().st_size
        sizes[f"_{channel}.bin"] = token_bytes
    documents = [{"id": f"owner__repo-{i}.traj-{i:08d}", "resolved": bool(i % 2), "tokens": int(n),
                  "weighted_tokens": round(float(n) / 3, 6), "steps": 40, "kept_steps": 31, "steps_cut": 0}
                 for i, n in enumerate(lengths)]
    meta = {"format_version": 1, "files": sizes, "dtypes": {"tokens": "int32", "weights": "float32"},
            "tokenizer": QWEN_TOKENIZER, "seq_length": 32768, "policy": {"name": "srft"},
            "counts": {"documents": n_docs, "tokens": int(total_tokens), "weighted_tokens": total_tokens / 3,
                       "max_token_id": 151_643},
            "documents": documents}
    files[".meta.json"].write_text(json.dumps(meta, indent=2))
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{prefix}]", "model.name=qwen2.5-0.5b",
                                    "model.seq_length=32768", "model.precision=bf16"])
    start = time.perf_counter()
    validate(cfg, 8)
    seconds = time.perf_counter() - start
    print(f"checks on a {token_bytes * 2 / 1e9:.1f} GB dataset ({n_docs} documents): {seconds:.3f} s")
    assert seconds < 1.0


# ---- 2. non-finite and empty steps -----------------------------------------------------------
def _bad_steps(prefix, steps, doc_seq=64):
    """Steps (1-based) whose global batch reads a document that fails its read check."""
    from srft_megatron.training.data import StepBatches, build_train_dataset

    ds = build_train_dataset([str(prefix)], None, seq_length=doc_seq, num_samples=steps * 8, seed=1234,
                             vocab_size=512)
    batches = StepBatches(ds, global_batch_size=8, micro_batch_size=2, dp_rank=0, dp_size=1)
    return {s + 1 for s in range(steps) if sum(int(mb["bad_documents"]) for mb in batches.micro_batches(s))}


def test_nan_weights_in_part_of_a_dataset_skip_only_their_steps(tmp_path, capsys):
    prefix = make_dataset(tmp_path / "data" / "nan", n_docs=120, max_len=50, seed=3)
    corrupt_weights(prefix, 7)                   # a weights file corrupted at the same size
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{prefix}]", *COMMON])
    validate(cfg, 1)                             # headers and metadata are intact: it passes
    steps = 12
    bad = _bad_steps(prefix, steps)
    assert bad and len(bad) < steps / 2, bad     # one document: a step now and then
    run = tmp_path / "run"
    overrides = [f"data.prefixes=[{prefix}]", f"train.steps={steps}", "checkpoint.save_interval=5", *COMMON]
    assert train(run, [*overrides, "train.exit_after_step=6"]) == 0
    out = capsys.readouterr().out
    assert f"dataset {prefix} document 7: " in out and "non-finite loss weights; step skipped" in out
    assert train(run, overrides) == 0            # resumes from iter_0000006 (saved at exit)
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    assert {m["step"] for m in metrics if m["skipped"]} == bad
    for m in metrics:
        if m["skipped"]:
            assert m["skip_reason"].startswith("bad data: 1 documents") and not m["update_ok"], m
        else:
            assert m["update_ok"] and np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"]), m
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["skipped_steps"] == len(bad) and summary["applied_steps"] == steps - len(bad)
    assert summary["ok"] is True
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("iter_*"))
    assert ckpts == ["iter_0000005", "iter_0000006", "iter_0000010", "iter_0000012"]
    for name in ckpts:
        assert_finite_checkpoint(run / "checkpoints" / name)


class _NanGrad(torch.autograd.Function):
    """Identity forward; NaN gradient backward: a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class NanGradsAt(Trainer):
    nan_steps: set[int] = set()
    unchanged: dict[int, bool] = {}

    def _forward_step(self, weight_sum):
        inner = super()._forward_step(weight_sum)
        poison = self.step + 1 in self.nan_steps

        def forward_step(data_iterator, model):
            output, loss_func = inner(data_iterator, model)
            return (_NanGrad.apply(output) if poison else output), loss_func

        return forward_step

    def train_step(self):
        before = [p.detach().clone() for c in self.model for p in c.parameters()]
        record = super().train_step()
        after = [p.detach() for c in self.model for p in c.parameters()]
        type(self).unchanged[self.step] = all(torch.equal(a, b) for a, b in zip(before, after))
        return record


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("small") / "d", n_docs=60, max_len=50)


@pytest.mark.parametrize("dist_opt, reason", [
    ("true", "non-finite gradients (megatron-core found-inf)"),   # distributed optimizer: found-inf
    ("false", "non-finite gradients"),                           # megatron-core's fp32 optimizer
])
def test_non_finite_gradients_are_not_applied(small_data, tmp_path, dist_opt, reason):
    NanGradsAt.nan_steps, NanGradsAt.unchanged = {2}, {}
    run = tmp_path / "run"
    overrides = [f"data.prefixes=[{small_data}]", "train.steps=4", f"parallel.distributed_optimizer={dist_opt}",
                 "checkpoint.save_interval=2", "optimizer.warmup_steps=0", *COMMON]  # (warm-up's first lr is 0)
    assert train(run, overrides, NanGradsAt) == 0
    m = read_metrics(run)
    assert [r["skipped"] for r in m] == [False, True, False, False]
    assert m[1]["skip_reason"] == reason and m[1]["update_ok"] is False and m[1]["grad_norm"] is None
    assert np.isfinite(m[1]["loss"])             # the loss was finite: only the gradients were not
    assert NanGradsAt.unchanged == {1: False, 2: True, 3: False, 4: False}
    assert m[1]["lr"] == m[0]["lr"] and m[2]["lr"] != m[1]["lr"]  # the schedule did not move
    assert_finite_checkpoint(run / "checkpoints" / "iter_0000002")
    assert_finite_checkpoint(run / "checkpoints" / "iter_0000004")


def test_consecutive_skips_stop_the_run_without_a_checkpoint(small_data, tmp_path, capsys):
    NanGradsAt.nan_steps, NanGradsAt.unchanged = set(range(1, 100)), {}
    run = tmp_path / "run"
    overrides = [f"data.prefixes=[{small_data}]", "train.steps=10", "checkpoint.save_on_exit=true", *COMMON]
    assert train(run, overrides, NanGradsAt) == 1
    out = capsys.readouterr().out
    assert "error: 3 steps in a row were skipped (train.max_skipped_steps=3)" in out
    assert [r["skipped"] for r in read_metrics(run)] == [True, True, True]
    assert not (run / "checkpoints").exists()
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["ok"] is False and summary["skipped_steps"] == 3 and summary["applied_steps"] == 0


class NanParamsAfter(Trainer):
    poison_after = 3

    def train_step(self):
        record = super().train_step()
        if self.step == self.poison_after:
            with torch.no_grad():
                next(iter(self.model[0].parameters())).fill_(float("nan"))
        return record


def test_non_finite_parameters_are_never_saved(small_data, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [f"data.prefixes=[{small_data}]", "train.steps=6", "checkpoint.save_interval=2", *COMMON]
    assert train(run, overrides, NanParamsAfter) == 1
    out = capsys.readouterr().out
    assert "refusing to save a checkpoint at step 4" in out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_0000002", "latest"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_0000002"
    m = read_metrics(run)
    assert m[3]["skipped"] and m[3]["skip_reason"] == "non-finite loss" and m[3]["loss"] is None


def test_steps_without_weighted_tokens_are_counted_and_stop_an_empty_start(tmp_path, capsys):
    # one weighted document among 80: the first steps train nothing
    docs = random_docs(80, 512, weighted=lambda i: i == 5, seed=4)
    prefix = write_dataset(tmp_path / "sparse", docs, policy={"name": "srft"})
    from srft_megatron.training.data import StepBatches, build_train_dataset

    ds = build_train_dataset([str(prefix)], None, seq_length=64, num_samples=20 * 8, seed=1234)
    batches = StepBatches(ds, global_batch_size=8, micro_batch_size=2, dp_rank=0, dp_size=1)
    first = next(s + 1 for s in range(20) if sum(float(mb["loss_weights"].sum()) for mb in batches.micro_batches(s)))
    assert first >= 3, first
    run = tmp_path / "stop"
    assert train(run, [f"data.prefixes=[{prefix}]", "train.steps=20", f"train.max_empty_steps={first - 1}",
                       *COMMON]) == 1
    out = capsys.readouterr().out
    assert f"the first {first - 1} steps had no weighted token (train.max_empty_steps={first - 1})" in out
    assert f"{prefix}: " in out and "tokens weighted, policy srft" in out and "Likely:" in out
    m = read_metrics(run)
    assert len(m) == first - 1 and all(r["empty"] and not r["update_ok"] and r["loss"] is None for r in m)
    assert not (run / "checkpoints").exists()
    run = tmp_path / "go-on"
    assert train(run, [f"data.prefixes=[{prefix}]", f"train.steps={first}", f"train.max_empty_steps={first}",
                       *COMMON]) == 0
    m = read_metrics(run)
    assert [r["empty"] for r in m] == [True] * (first - 1) + [False]
    assert m[-1]["update_ok"] and m[-1]["weighted_tokens"] > 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["empty_steps"] == first - 1 and summary["applied_steps"] == 1


# ---- 3. checkpoint integrity -----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(small_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    assert train(run, [f"data.prefixes=[{small_data}]", "train.steps=2", *COMMON]) == 0
    return run


def _distcp(ckpt: Path) -> Path:
    return sorted(ckpt.glob("*.distcp"), key=lambda p: -p.stat().st_size)[0]


def _damage(path: Path, how: str) -> str:
    if how == "flip":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x10
        path.write_bytes(bytes(raw))
        return "does not match its checksum"
    if how == "truncate":
        size = path.stat().st_size
        with open(path, "r+b") as h:
            h.truncate(size - 1000)
        return f"has {size - 1000} bytes, srft_checkpoint.json records {size} (truncated or overwritten)"
    path.unlink()
    return "is missing (a partial checkpoint)"


@pytest.mark.parametrize("how", ["flip", "truncate", "missing"])
def test_damaged_checkpoint_refused_by_resume_and_convert(small_data, trained_run, tmp_path, capsys, how):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ckpt = run / "checkpoints" / "iter_0000002"
    target = _distcp(ckpt)
    needle = f"checkpoint {ckpt} is corrupted: {target.name} " + _damage(target, how)
    lines_before = len(read_metrics(run))
    code, out, err = train_cli(capsys, run, f"data.prefixes=[{small_data}]", "train.steps=4", *COMMON)
    assert code == 2 and err and needle in err[-1] and err[-1].startswith("srft train: error: "), err
    assert not any("Traceback" in line for line in err)
    assert len(read_metrics(run)) == lines_before  # not a step more
    assert not dist.is_initialized()
    hf = tmp_path / "hf"
    code, _, err = run_cli(capsys, ["convert", "to-hf", "--checkpoint", str(ckpt), "--output", str(hf), "--quiet",
                                    "--tokenizer", "none"])
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not hf.exists()


def test_corrupted_init_from_is_refused(small_data, trained_run, tmp_path, capsys):
    init = tmp_path / "init"
    shutil.copytree(trained_run / "checkpoints" / "iter_0000002", init)
    target = _distcp(init)
    needle = _damage(target, "flip")
    code, _, err = train_cli(capsys, tmp_path / "run", f"data.prefixes=[{small_data}]", f"train.init_from={init}",
                             "train.steps=2", *COMMON)
    assert code == 2 and needle in err[-1] and target.name in err[-1], err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_intact_checkpoint_reports_its_verification_cost(small_data, trained_run, tmp_path, capsys):
    ckpt = trained_run / "checkpoints" / "iter_0000002"
    marker = json.loads((ckpt / "srft_checkpoint.json").read_text())
    assert marker["checksum_algorithm"] == "xxh3_128" and set(marker["files"]) >= {".metadata"}
    assert marker["checksum_seconds"] < marker["save_seconds"]
    code, out, err = run_cli(capsys, ["convert", "to-hf", "--checkpoint", str(ckpt), "--output",
                                      str(tmp_path / "hf"), "--quiet", "--tokenizer", "none"])
    assert code == 0, err
    assert f"checkpoint {ckpt}: {len(marker['files'])} files," in out and "s/GB)" in out
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    code, out, err = train_cli(capsys, run, f"data.prefixes=[{small_data}]", "train.steps=3", *COMMON)
    assert code == 0, err
    assert f"resumed from {run / 'checkpoints' / 'iter_0000002'} at step 2 (" in out and "s/GB))" in out


def test_latest_naming_a_missing_checkpoint_is_refused(small_data, trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "checkpoints" / "iter_0000002")
    code, _, err = train_cli(capsys, run, f"data.prefixes=[{small_data}]", "train.steps=4", *COMMON)
    assert code == 2 and len(err) == 1 and "iter_0000002 named by" in err[0] and "is missing" in err[0], err


def test_non_finite_weights_refused_despite_valid_checksums(small_data, tmp_path, capsys):
    """A checkpoint whose files are intact but whose weights are NaN (e.g. written by an older
    version): convert and init_from refuse it."""
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model
    from srft_megatron.parallel.dims import ParallelDims, initialize
    from srft_megatron.training.checkpoint import save_model_checkpoint

    shape = get_shape("tiny")
    ckpt = tmp_path / "nan-init"
    initialize(ParallelDims(), seed=1)
    try:
        model = build_gpt_model(shape, precision="fp32")
        with torch.no_grad():
            model.decoder.layers[1].mlp.linear_fc2.weight.fill_(float("nan"))
        save_model_checkpoint([model], ckpt, shape=shape)
    finally:
        destroy(process_group=True)
    code, _, err = run_cli(capsys, ["convert", "to-hf", "--checkpoint", str(ckpt), "--output",
                                    str(tmp_path / "hf"), "--quiet", "--tokenizer", "none"])
    assert code == 2 and len(err) == 1, err
    assert "tensor model.layers.1.mlp.down_proj.weight has 8192 non-finite values" in err[0], err
    code, _, err = train_cli(capsys, tmp_path / "run", f"data.prefixes=[{small_data}]", f"train.init_from={ckpt}",
                             "train.steps=2", *COMMON)
    assert code == 2 and f"checkpoint {ckpt} holds non-finite parameters (1 tensors" in err[-1], err


def test_dataset_error_type_is_one_line_for_unreadable_metadata(tmp_path):
    prefix = make_dataset(tmp_path / "ds", n_docs=3)
    dataset_files(prefix)[".meta.json"].write_text("{not json")
    with pytest.raises(DatasetError, match=r"cannot read .*\.meta\.json: JSONDecodeError"):
        check_dataset(prefix)


def test_checksum_work_is_split_once_over_ranks_shards_to_their_writer():
    from srft_megatron.training.integrity import _share

    items = [("__0_0.distcp", 100), ("__1_0.distcp", 90), ("__1_1.distcp", 80), ("__5_0.distcp", 70),
             (".metadata", 10), ("common.pt", 3), ("metadata.json", 1)]
    for world in (1, 2, 3, 8):
        shares = [_share(items, r, world) for r in range(world)]
        assert sorted(n for s in shares for n in s) == sorted(n for n, _ in items)  # each file once
        for r, share in enumerate(shares):
            for name in share:
                if name.startswith("__") and int(name[2]) < world:
                    assert int(name[2]) == r, (world, shares)  # hashed where it was written
