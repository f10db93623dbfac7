"""Context parallelism (CP) for packed THD batches: megatron-core's load-balanced split, as pure functions.

With CP = c, every rank of a context-parallel group holds 1/c of each packed sequence and
Transformer Engine's attention exchanges keys and values around the ring. Causal attention
makes late tokens expensive, so megatron-core does not cut the sequence into c contiguous
pieces: each *document* is padded to a multiple of 2c, cut into 2c equal chunks, and rank r
takes chunks r and 2c-1-r (its `get_batch_on_this_cp_rank`, per-document balancing, which calls
TE's `thd_get_partitioned_indices`). Every rank then gets the same number of tokens *and* the
same attention work. On GPU that TE kernel does the indexing; `partition_indices` computes the
same indices on the CPU so the split can be tested without TE and reused by the data side.

What each rank needs (`split_for_rank`):
- tokens, labels, loss weights and positions of its chunks (positions keep their place in the
  document: RoPE sees the true position whatever rank holds the token);
- `cu_seqlens` / `cu_seqlens_padded` of the *whole* sequence: TE's CP attention takes the global
  boundaries and derives its share (each padded document contributes len/c tokens to every rank,
  `rank_cu_seqlens`).

The trainer (`batch_on_this_rank`, GPU / TE only) pads with `pad_documents_for_cp` and hands
the split to megatron-core's own `megatron.core.utils.get_batch_on_this_cp_rank` (per-document
balancing: TE's `thd_get_partitioned_indices`); `partition_indices` is the same rule in plain
torch, for the CPU tests. Padding sits after each document's real tokens and carries weight 0,
so the THD boundaries given to TE are the padded ones (`cu_seqlens` = `cu_seqlens_padded`): no
real token attends to padding under the causal mask and RoPE positions restart per padded
document exactly where they restart per real one. The packer reserves room for the padding
(`data.pack_documents(length_multiple=2 x CP)` packs each document as if padded), so every CP
micro-batch is exactly `model.seq_length` positions and pipeline shapes stay fixed.

The loss stays the global weighted mean (`srft_megatron/training/loss.py`): a rank's micro-batch
now holds only part of each sequence's weights, so the weight sum is all-reduced over data x
context parallel ranks (`loss_reduction_group`), and the schedules' gradient sum over the same
group (megatron reduces gradients over DP x CP) gives exactly the CP=1 gradient.

Checkpoints do not depend on CP: every CP rank holds the whole model (CP ranks are replicas
like DP ranks in megatron's sharded state dicts), so model checkpoints (`train.init_from`,
`srft convert`) load at any CP, and the distributed optimizer's state, sharded over DP x CP, is
saved `dp_reshardable` (`training/checkpoint.py`): a changed CP resumes like a changed DP.

    pad = pad_documents_for_cp(batch, cp=2, seq_length=65536)
    mine = split_for_rank(pad, cp=2, rank=parallel_state.get_context_parallel_rank())
"""

from __future__ import annotations

import torch

SEQUENCE_KEYS = ("tokens", "labels", "loss_weights", "position_ids", "segment_ids")
PAD_TOKEN = 0


def cp_multiple(cp: int) -> int:
    """Each document's length is padded to a multiple of this (megatron: 2 x CP; 1 without CP)."""
    if cp < 1:
        raise ValueError(f"context parallel size must be >= 1, got {cp}")
    return 2 * cp if cp > 1 else 1


def padded_length(n: int, cp: int) -> int:
    m = cp_multiple(cp)
    return -(-n // m) * m


def document_lengths(segment_ids: torch.Tensor) -> torch.Tensor:
    """Lengths of the runs of equal segment ids of one packed sequence [s] (documents, then padding)."""
    _, counts = torch.unique_consecutive(segment_ids, return_counts=True)
    return counts


def pad_documents_for_cp(batch: dict[str, torch.Tensor], cp: int, seq_length: int | None = None,
                         extra_keys: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """One packed sample (micro-batch size 1, `srft_megatron.training.data.collate`) with every
    document padded to a multiple of 2 x CP.

    Pad positions get token/label `PAD_TOKEN`, weight 0 (never trained on) and the document's
    next positions; they sit after the document's real tokens, so under the causal mask no real
    token attends to them. `extra_keys` (other per-position keys: validation's `label_codes`,
    `resolved`) are laid out the same way with -1 on padding. Returns the padded sequence keys
    (and `extra_keys`) plus `cu_seqlens` (real lengths) and
    `cu_seqlens_padded` (int32, as `PackedSeqParams` takes them). The total is `seq_length` when
    given (the rest is one padding segment; ValueError if the padded documents do not fit),
    else the padded sum."""
    if batch["tokens"].shape[0] != 1:
        raise ValueError("THD packing with context parallelism needs micro_batch_size=1")
    # The packer's trailing padding (after `num_real_tokens`) is dropped and laid out again.
    n_real = int(batch.get("num_real_tokens", batch["tokens"].shape[1]))
    lengths = document_lengths(batch["segment_ids"][0, :n_real]).tolist()
    keys = [k for k in SEQUENCE_KEYS if k != "segment_ids"] + list(extra_keys)
    fill = {k: -1 if k in extra_keys else PAD_TOKEN for k in keys}
    pieces: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    real, padded = [0], [0]
    for n in lengths:
        at, extra = real[-1], padded_length(n, cp) - n  # documents are contiguous in the input
        for key in keys:
            part = batch[key][0, at:at + n]
            pieces[key].append(part)
            if extra:
                pieces[key].append(part[-1] + 1 + torch.arange(extra, dtype=part.dtype) if key == "position_ids"
                                   else torch.full((extra,), fill[key], dtype=part.dtype))
        real.append(real[-1] + n)
        padded.append(padded[-1] + n + extra)
    if seq_length is not None:
        if seq_length % cp_multiple(cp):
            raise ValueError(f"seq_length={seq_length} is not a multiple of 2 x CP = {cp_multiple(cp)}")
        if padded[-1] > seq_length:
            raise ValueError(f"documents padded to multiples of {cp_multiple(cp)} take {padded[-1]} positions, "
                             f"more than seq_length={seq_length}")
        rest = seq_length - padded[-1]
        if rest:  # one trailing padding segment, positions from 0 as the packer writes them
            for key in keys:
                dtype = batch[key].dtype
                pieces[key].append(torch.arange(rest, dtype=dtype) if key == "position_ids"
                                   else torch.full((rest,), fill[key], dtype=dtype))
            real.append(real[-1])
            padded.append(seq_length)
    out = {k: torch.cat(v).unsqueeze(0) for k, v in pieces.items()}
    sizes = torch.tensor(padded[1:]) - torch.tensor(padded[:-1])
    out["segment_ids"] = torch.repeat_interleave(torch.arange(len(sizes)), sizes).unsqueeze(0)
    out["cu_seqlens"] = torch.tensor(real, dtype=torch.int32)
    out["cu_seqlens_padded"] = torch.tensor(padded, dtype=torch.int32)
    return out


def partition_indices(cu_seqlens_padded: torch.Tensor, cp: int, rank: int) -> torch.Tensor:
    """Positions of the packed sequence that CP rank `rank` holds, in order (TE's
    `thd_get_partitioned_indices`): for each document, chunks `rank` and `2cp-1-rank` of 2cp."""
    if not 0 <= rank < cp:
        raise ValueError(f"rank {rank} outside a context-parallel group of {cp}")
    bounds = cu_seqlens_padded.tolist()
    parts = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        n = end - start
        if n % cp_multiple(cp):
            raise ValueError(f"document of {n} positions is not padded to a multiple of {cp_multiple(cp)}")
        if cp == 1:
            parts.append(torch.arange(start, end))
            continue
        chunk = n // (2 * cp)
        for c in (rank, 2 * cp - 1 - rank):
            parts.append(torch.arange(start + c * chunk, start + (c + 1) * chunk))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def rank_cu_seqlens(cu_seqlens_padded: torch.Tensor, cp: int) -> torch.Tensor:
    """Document boundaries within one rank's share: each padded document gives len/cp tokens."""
    return (cu_seqlens_padded // cp).to(torch.int32)


def split_for_rank(batch: dict[str, torch.Tensor], cp: int, rank: int) -> dict[str, torch.Tensor]:
    """This CP rank's share of a `pad_documents_for_cp` batch: the sequence keys index-selected,
    the global `cu_seqlens` / `cu_seqlens_padded` kept (TE takes those), `rank_cu_seqlens` added."""
    index = partition_indices(batch["cu_seqlens_padded"], cp, rank)
    out = {k: v.index_select(1, index) for k, v in batch.items() if k in SEQUENCE_KEYS}
    out["cu_seqlens"] = batch["cu_seqlens"]
    out["cu_seqlens_padded"] = batch["cu_seqlens_padded"]
    out["rank_cu_seqlens"] = rank_cu_seqlens(batch["cu_seqlens_padded"], cp)
    return out


def loss_reduction_group():
    """The group the loss weight sum is all-reduced over: data x context parallel ranks."""
    from megatron.core import parallel_state as ps

    return ps.get_data_parallel_group(with_context_parallel=True)


def batch_on_this_rank(mb: dict[str, torch.Tensor], *, cp: int, seq_length: int, device):
    """This CP rank's share of one packed micro-batch (size 1) and its THD `PackedSeqParams`.

    Documents padded (`pad_documents_for_cp` to `seq_length`: ValueError if the batch was not
    packed with room for it, `data.pack_documents(length_multiple=2 x CP)`), then split by
    megatron-core's `get_batch_on_this_cp_rank` over the context-parallel group (its keys:
    `loss_mask` carries our loss weights). Other per-position keys of the micro-batch (the
    validation's `label_codes`, `resolved`) get -1 on padding and the same split
    (`partition_indices`, the rule megatron's applies). Returns `({tokens, labels, loss_weights,
    position_ids, ...}, packed_seq_params)`; needs Transformer Engine (GPU)."""
    from megatron.core import parallel_state as ps
    from megatron.core.packed_seq_params import PackedSeqParams
    from megatron.core.utils import get_batch_on_this_cp_rank

    extra = tuple(k for k, v in mb.items() if k not in SEQUENCE_KEYS and isinstance(v, torch.Tensor)
                  and v.shape == mb["tokens"].shape)
    padded = pad_documents_for_cp(mb, cp, seq_length=seq_length, extra_keys=extra)
    cu = padded["cu_seqlens_padded"].to(device)
    batch = {"tokens": padded["tokens"].to(device), "labels": padded["labels"].to(device),
             "loss_mask": padded["loss_weights"].to(device), "position_ids": padded["position_ids"].to(device),
             "cu_seqlens": cu.unsqueeze(0), "cu_seqlens_padded": cu.unsqueeze(0)}
    batch = get_batch_on_this_cp_rank(batch, is_hybrid_cp=False, cp_group=ps.get_context_parallel_group())
    max_len = int(torch.diff(padded["cu_seqlens_padded"]).max())
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, cu_seqlens_q_padded=cu,
                             cu_seqlens_kv_padded=cu, max_seqlen_q=max_len, max_seqlen_kv=max_len)
    share = {"tokens": batch["tokens"], "labels": batch["labels"], "loss_weights": batch["loss_mask"],
             "position_ids": batch["position_ids"]}
    if extra:
        import torch.distributed as dist

        index = partition_indices(padded["cu_seqlens_padded"], cp, dist.get_rank(ps.get_context_parallel_group()))
        for key in extra:
            share[key] = padded[key][0, index].unsqueeze(0).to(device)
    return share, params
