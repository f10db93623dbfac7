"""Context parallelism as pure functions, against a reference and against CP=1.

Real packed micro-batches (the training data path on a synthetic dataset) are padded for CP and
split across simulated CP ranks: every token lands on exactly one rank, positions and
`cu_seqlens` are right, ranks get equal tokens and equal causal-attention work, and the SRFT
loss computed per rank with `training/loss.py` and reduced over data x context ranks equals the
CP=1 loss."""

from __future__ import annotations

import pytest
import torch

from srft_megatron.training.context_parallel import (pad_documents_for_cp, padded_length, partition_indices,
                                                     split_for_rank)
from srft_megatron.training.loss import global_weight_sum, weighted_nll

from .helpers import make_dataset

SEQ = 256


@pytest.fixture(scope="module")
def micro_batches(tmp_path_factory):
    from srft_megatron.training.data import StepBatches, build_train_dataset

    prefix = make_dataset(tmp_path_factory.mktemp("cp") / "synthetic", n_docs=40, min_len=5, max_len=90, seed=3)
    ds = build_train_dataset([str(prefix)], None, seq_length=SEQ, num_samples=8, seed=7)
    mbs = StepBatches(ds, global_batch_size=8, micro_batch_size=1, dp_rank=0, dp_size=1).micro_batches(0)
    assert any(len(torch.unique(mb["segment_ids"])) > 2 for mb in mbs)  # several documents per sequence
    return mbs


def _reference_indices(cu_padded: list[int], cp: int, rank: int) -> list[int]:
    """megatron-core's description: each document cut into 2cp chunks, rank r takes r and 2cp-1-r."""
    out = []
    for start, end in zip(cu_padded[:-1], cu_padded[1:]):
        chunks = torch.arange(start, end).reshape(2 * cp, -1)
        out += chunks[rank].tolist() + chunks[2 * cp - 1 - rank].tolist()
    return out


@pytest.mark.parametrize("cp", [2, 4])
def test_partition_matches_reference(cp):
    gen = torch.Generator().manual_seed(cp)
    lengths = [padded_length(int(n), cp) for n in torch.randint(1, 100, (7,), generator=gen)]
    cu = torch.tensor([0] + lengths).cumsum(0).to(torch.int32)
    for rank in range(cp):
        assert partition_indices(cu, cp, rank).tolist() == _reference_indices(cu.tolist(), cp, rank)
    with pytest.raises(ValueError, match="not padded"):
        partition_indices(torch.tensor([0, 2 * cp + 1]), cp, 0)


@pytest.mark.parametrize("cp", [2, 4])
def test_split_puts_every_token_on_exactly_one_rank(micro_batches, cp):
    for mb in micro_batches:
        padded = pad_documents_for_cp(mb, cp, seq_length=SEQ + 64)
        cu, cu_real = padded["cu_seqlens_padded"], padded["cu_seqlens"]
        assert (torch.diff(cu) % (2 * cp) == 0).all() and int(cu[-1]) == SEQ + 64
        ranks = [split_for_rank(padded, cp, r) for r in range(cp)]
        index = torch.cat([partition_indices(cu, cp, r) for r in range(cp)])
        assert sorted(index.tolist()) == list(range(SEQ + 64))  # a permutation: once each
        for key in ("tokens", "labels", "loss_weights", "position_ids"):
            gathered = torch.empty_like(padded[key])
            gathered[0, index] = torch.cat([r[key] for r in ranks], dim=1)[0]
            assert torch.equal(gathered, padded[key]), key
        # the real tokens, in order, are the unpadded micro-batch's documents
        real = torch.cat([torch.arange(int(cu[i]), int(cu[i]) + int(cu_real[i + 1] - cu_real[i]))
                          for i in range(len(cu) - 1)])
        n = int(mb["num_real_tokens"])
        for key in ("tokens", "labels", "loss_weights", "position_ids"):
            assert torch.equal(padded[key][0, real], mb[key][0, :n]), key
        assert float(padded["loss_weights"].sum()) == pytest.approx(float(mb["loss_weights"].sum()))
        # positions continue through each document's padding: RoPE sees in-document positions
        for i in range(len(cu) - 1):
            pos = padded["position_ids"][0, int(cu[i]):int(cu[i + 1])]
            assert torch.equal(pos, torch.arange(len(pos))), i
        # equal tokens and equal causal attention work (sum of in-document positions + 1) per rank
        assert {r["tokens"].shape[1] for r in ranks} == {(SEQ + 64) // cp}
        assert len({int((r["position_ids"] + 1).sum()) for r in ranks}) == 1
        assert torch.equal(ranks[0]["rank_cu_seqlens"], (cu // cp).to(torch.int32))


def test_padding_that_does_not_fit_is_refused(micro_batches):
    full = max(micro_batches, key=lambda mb: int(mb["num_real_tokens"]))
    with pytest.raises(ValueError, match="more than seq_length"):
        pad_documents_for_cp(full, 8, seq_length=int(full["num_real_tokens"]) // 16 * 16)


@pytest.mark.parametrize("cp", [2, 4])
def test_cp_reduction_equals_cp1(micro_batches, cp):
    """DP=2 x CP: per-rank weight sums add up to the global one and the summed per-rank losses
    (and their gradients) equal the CP=1 loss of the same global batch."""
    gen = torch.Generator().manual_seed(0)
    dp_shares = [micro_batches[:4], micro_batches[4:]]
    nll = [[torch.rand(mb["tokens"].shape, generator=gen, dtype=torch.float64) * 5 for mb in share]
           for share in dp_shares]  # a stand-in per-token NLL aligned with each micro-batch's tokens

    w1 = sum(global_weight_sum(share) for share in dp_shares)  # CP=1: all-reduce over DP
    leaves1 = [[x.clone().requires_grad_() for x in share] for share in nll]
    loss1 = sum(weighted_nll(x, mb["loss_weights"], w1)[0]
                for share, xs in zip(dp_shares, leaves1) for mb, x in zip(share, xs))
    loss1.backward()

    rank_batches, rank_nll = [], []  # CP ranks of every DP rank
    leaves = [[x.clone().requires_grad_() for x in share] for share in nll]
    for share, xs in zip(dp_shares, leaves):
        for r in range(cp):
            mbs, ls = [], []
            for mb, x in zip(share, xs):
                padded = pad_documents_for_cp(mb, cp, seq_length=SEQ + 64)
                index = partition_indices(padded["cu_seqlens_padded"], cp, r)
                # carry the NLL through the same padding (pads: 0) and the same split
                full = torch.zeros(SEQ + 64, dtype=torch.float64)
                full = full.index_put((_real_positions(padded),), x[0, :int(mb["num_real_tokens"])])
                mbs.append(split_for_rank(padded, cp, r))
                ls.append(full[index].unsqueeze(0))
            rank_batches.append(mbs)
            rank_nll.append(ls)
    local = [global_weight_sum(mbs) for mbs in rank_batches]
    w_cp = sum(local)  # all-reduce over data x context parallel ranks
    assert float(w_cp) == pytest.approx(float(w1), rel=1e-12)
    assert len(local) == 2 * cp and all(float(s) < float(w1) for s in local)
    loss_cp = sum(weighted_nll(x, mb["loss_weights"], w_cp)[0]
                  for mbs, xs in zip(rank_batches, rank_nll) for mb, x in zip(mbs, xs))
    assert loss_cp.item() == pytest.approx(loss1.item(), rel=1e-6)
    loss_cp.backward()
    for a, b in zip(sum(leaves1, []), sum(leaves, [])):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-9)


def _real_positions(padded) -> torch.Tensor:
    cu, real = padded["cu_seqlens_padded"], padded["cu_seqlens"]
    return torch.cat([torch.arange(int(cu[i]), int(cu[i]) + int(real[i + 1] - real[i]))
                      for i in range(len(cu) - 1)])


def test_context_parallel_config_is_checked_up_front():
    from srft_megatron.errors import ConfigError
    from srft_megatron.parallel.dims import ParallelDims
    from srft_megatron.training.config import load_config
    from srft_megatron.training.preflight import validate

    from .helpers import TINY_CONFIG

    with pytest.raises(ConfigError, match="parallel.context=2 needs Transformer Engine"):
        validate(load_config(TINY_CONFIG, ["parallel.context=2", "model.use_te=false"]), 2, check_data=False)
    with pytest.raises(ConfigError, match="parallel.context must be >= 1"):
        validate(load_config(TINY_CONFIG, ["parallel.context=0"]), 1, check_data=False)
    dims = ParallelDims.from_world(16, tp=2, pp=2, cp=2)
    assert (dims.dp, dims.world_size) == (2, 16)
    with pytest.raises(ConfigError, match="tensor x pipeline x context = 2 x 1 x 4"):
        ParallelDims.from_world(12, tp=2, cp=4)


@pytest.fixture(scope="module")
def cp_packed(tmp_path_factory):
    """Micro-batches packed as the trainer packs them under CP: documents sized as if padded to
    a multiple of 8 (2 x CP for CP 4, hence enough for CP 2), the same data as `micro_batches`."""
    from srft_megatron.training.data import StepBatches, build_train_dataset

    prefix = make_dataset(tmp_path_factory.mktemp("cp8") / "synthetic", n_docs=40, min_len=5, max_len=90, seed=3)
    ds = build_train_dataset([str(prefix)], None, seq_length=SEQ, num_samples=8, seed=7, length_multiple=8)
    return StepBatches(ds, global_batch_size=8, micro_batch_size=1, dp_rank=0, dp_size=1).micro_batches(0)


def test_packing_reserves_room_for_cp_padding(micro_batches, cp_packed):
    """With `length_multiple` every sample still fits `seq_length` once its documents are padded;
    without it, padding overflows (so the reservation is what makes the CP batch fit)."""
    from srft_megatron.training.context_parallel import document_lengths

    def padded_total(mb, cp):
        n = int(mb["num_real_tokens"])
        return sum(padded_length(k, cp) for k in document_lengths(mb["segment_ids"][0, :n]).tolist())

    assert all(padded_total(mb, cp) <= SEQ for mb in cp_packed for cp in (2, 4))
    assert max(padded_total(mb, 4) for mb in micro_batches) > SEQ


@pytest.mark.parametrize("cp", [2, 4])
def test_trainer_batch_goes_through_megatrons_cp_split(cp_packed, monkeypatch, cp):
    """`batch_on_this_rank` (the trainer's forward step under CP) hands the padded batch to
    megatron-core's own `get_batch_on_this_cp_rank`. Here TE's `thd_get_partitioned_indices`
    (GPU-only) is stood in for by `partition_indices` and the CP group by a stand-in of size cp:
    each rank's share and THD params must be the reference split of the padded micro-batch."""
    import types

    import megatron.core.parallel_state as ps
    import megatron.core.utils as mcore_utils
    import torch.distributed as dist

    from srft_megatron.training.context_parallel import batch_on_this_rank

    group, state = object(), {"rank": 0}
    get_world_size, get_rank = dist.get_world_size, dist.get_rank
    monkeypatch.setattr(ps, "get_context_parallel_group", lambda *a, **k: group)
    monkeypatch.setattr(dist, "get_world_size", lambda g=None: cp if g is group else get_world_size(g))
    monkeypatch.setattr(dist, "get_rank", lambda g=None: state["rank"] if g is group else get_rank(g))
    monkeypatch.setattr(mcore_utils, "tex", types.SimpleNamespace(
        thd_get_partitioned_indices=lambda cu, total, size, rank: partition_indices(cu, size, rank)))
    for mb in cp_packed[:3]:
        n = int(mb["num_real_tokens"])
        mb = {**mb, "label_codes": torch.where(mb["loss_weights"] > 0, 1, 0)}  # a validation key
        mb["label_codes"][0, n:] = -1
        padded = pad_documents_for_cp(mb, cp, seq_length=SEQ)
        pads = 0
        for rank in range(cp):
            state["rank"] = rank
            share, params = batch_on_this_rank(mb, cp=cp, seq_length=SEQ, device="cpu")
            want = split_for_rank(padded, cp, rank)
            for key in ("tokens", "labels", "loss_weights", "position_ids"):
                assert torch.equal(share[key], want[key]), key
            # an extra per-position key follows its token (-1 on padding): 1 exactly where weighted
            assert torch.equal(share["label_codes"] == 1, share["loss_weights"] > 0)
            pads += int((share["label_codes"] == -1).sum())
            assert torch.equal(params.cu_seqlens_q, padded["cu_seqlens_padded"])
            assert torch.equal(params.cu_seqlens_q_padded, padded["cu_seqlens_padded"])
            assert params.qkv_format == "thd" and params.max_seqlen_q == int(torch.diff(params.cu_seqlens_q).max())
        assert pads == SEQ - n  # padding, and only padding, carries -1
