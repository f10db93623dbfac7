"""Blends, packing and data positions of the training dataset (megatron-core builder)."""

from __future__ import annotations

import numpy as np
import pytest

from srft_megatron.dataset import open_dataset
from srft_megatron.training.data import StepBatches, build_train_dataset, pack_documents

from .helpers import make_dataset


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("blend")
    return (make_dataset(root / "resolved", n_docs=30, seed=1),
            make_dataset(root / "unresolved", n_docs=30, seed=2, vocab=256))


def _doc_index(prefix):
    docs = open_dataset(prefix)
    return {tuple(docs.document(i)[0].tolist()): docs.document(i)[1] for i in range(len(docs))}


def test_blend_follows_weights_and_keeps_weights_aligned(two_datasets):
    a, b = two_datasets
    ds = build_train_dataset([str(a), str(b)], [0.75, 0.25], seq_length=64, num_samples=200, seed=3)
    assert len(ds) == 200
    ids = np.array([int(ds[i]["dataset_id"]) for i in range(200)])
    assert abs((ids == 0).mean() - 0.75) < 0.03
    # Every packed document's weights are exactly its source document's weights (shifted by one).
    index = {0: _doc_index(a), 1: _doc_index(b)}
    checked = 0
    for i in range(40):
        s = ds[i]
        src = index[int(s["dataset_id"])]
        at = 0
        for n in s["doc_lengths"]:
            tokens = [int(s["tokens"][at])] + s["labels"][at:at + n].tolist()
            weights = src[tuple(tokens)]
            assert np.array_equal(s["loss_weights"][at:at + n], weights[1:n + 1])
            at += n
            checked += 1
    assert checked > 40  # 40 samples, several documents each


def test_packing_keeps_whole_documents_within_seq_length():
    lengths = np.array([10, 30, 65, 5, 40, 20, 64])
    order, bounds = pack_documents(lengths, 64, None, seed=0, pack=True)
    assert sorted(order.tolist()) == list(range(len(lengths)))  # one epoch, every document once
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        assert (lengths[order[lo:hi]] - 1).sum() <= 64           # whole documents, within the sample
    with pytest.raises(ValueError, match=r"more than seq_length \+ 1"):
        pack_documents(np.array([10, 66]), 64, None, seed=0, pack=True)  # never split: refused
    order2, bounds2 = pack_documents(np.array([10, 30, 100]), 64, 20, seed=0, pack=False)
    assert len(bounds2) - 1 >= 20 and np.all(np.diff(bounds2) == 1)
    assert sorted(order2[:3].tolist()) == [0, 1, 2]                # one document per sample, epoch by epoch


def test_step_batches_partition_the_global_batch(two_datasets):
    a, _ = two_datasets
    ds = build_train_dataset([str(a)], None, seq_length=64, num_samples=64, seed=3)
    whole = StepBatches(ds, global_batch_size=8, micro_batch_size=2, dp_rank=0, dp_size=1)
    shards = [StepBatches(ds, global_batch_size=8, micro_batch_size=2, dp_rank=r, dp_size=2) for r in range(2)]
    for step in (0, 3):
        assert sum((s.sample_indices(step) for s in shards), []) == whole.sample_indices(step)
    assert whole.sample_indices(1) == list(range(8, 16))  # data position = step x global batch


def test_trim_padding_cuts_every_position_tensor_after_the_real_tokens():
    """TE THD without pipelining: the packer's trailing padding is cut (to the FP8 / SP multiple)."""
    import torch

    from srft_megatron.training.data import assemble_sample, collate, trim_padding

    from .helpers import context_docs

    store = context_docs(512)  # 33 + 17 + 65 + 9 tokens: 120 input positions, 8 of padding at 128
    mb = collate([assemble_sample(store, [0, 1, 2, 3], 128)])
    assert int(mb["num_real_tokens"]) == 120 and int(mb["segment_ids"][0, -1]) == 4  # padding segment
    for multiple, keep in ((1, 120), (16, 128), (8, 120), (7, 126)):
        cut = trim_padding(mb, multiple)
        for key in ("tokens", "labels", "loss_weights", "position_ids", "segment_ids"):
            assert cut[key].shape == (1, keep), (key, multiple)
            assert torch.equal(cut[key], mb[key][:, :keep])
        assert int(cut["num_real_tokens"]) == 120 and int(cut["attn_pairs"]) == int(mb["attn_pairs"])
    # multiple 1: nothing of the padding is left, so THD gets no padding segment at all
    assert int(trim_padding(mb, 1)["segment_ids"].max()) == 3
    with pytest.raises(ValueError, match="micro_batch_size=1"):
        trim_padding(collate([assemble_sample(store, [0], 64)] * 2))
