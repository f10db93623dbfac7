"""The weighted NLL on a real megatron-core GPTModel (world of one, gloo, local spec)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srft_megatron.model.configs import get_shape
from srft_megatron.model.provider import build_gpt_model
from srft_megatron.parallel.dims import ParallelDims, destroy, initialize
from srft_megatron.training.data import assemble_sample, block_causal_mask, collate
from srft_megatron.training.loss import global_weight_sum, reference_weighted_nll, weighted_nll

pytestmark = pytest.mark.usefixtures("cpu_shim")  # megatron-core in this process (conftest)

SHAPE = get_shape("tiny")


@pytest.fixture(scope="module")
def model():
    initialize(ParallelDims(), seed=7)
    m = build_gpt_model(SHAPE, precision="fp32")
    yield m
    destroy(process_group=True)


def _batch(seed: int, b: int = 2, s: int = 24, frac: bool = True):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, SHAPE.vocab_size, (b, s), generator=g)
    labels = torch.randint(1, SHAPE.vocab_size, (b, s), generator=g)
    w = (torch.rand(b, s, generator=g) > 0.5).float()
    if frac:
        w = w * torch.rand(b, s, generator=g)
    return tokens, labels, w


def _per_token(model, tokens, labels, segment_ids=None, position_ids=None):
    b, s = tokens.shape
    seg = torch.zeros(b, s, dtype=torch.long) if segment_ids is None else segment_ids
    pos = torch.arange(s).expand(b, s) if position_ids is None else position_ids
    return model(tokens, pos, block_causal_mask(seg), labels=labels)


def _loss_and_grads(model, tokens, labels, w):
    model.zero_grad()
    loss, _, _ = weighted_nll(_per_token(model, tokens, labels), w, w.sum())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_zero_weight_tokens_contribute_nothing(model):
    tokens, labels, w = _batch(1)
    loss_a, grads_a = _loss_and_grads(model, tokens, labels, w)
    labels_b = labels.clone()
    labels_b[w == 0] = (labels_b[w == 0] * 7 + 3) % SHAPE.vocab_size  # change only weight-0 labels
    assert (labels_b != labels).any()
    loss_b, grads_b = _loss_and_grads(model, tokens, labels_b, w)
    assert torch.equal(loss_a, loss_b)
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name


def test_fractional_weights_scale_each_token_exactly(model):
    tokens, labels, w = _batch(2)
    nll = _per_token(model, tokens, labels).detach()
    idx = torch.nonzero(w.flatten() > 0).flatten()[:3]
    for i in idx:
        one = torch.zeros_like(w).flatten()
        one[i] = w.flatten()[i]
        weighted, _, report = weighted_nll(nll, one.view_as(w), torch.tensor(1.0))
        expected = nll.flatten()[i] * w.flatten()[i]
        torch.testing.assert_close(weighted, expected, rtol=1e-6, atol=0)
        assert float(report["weighted_nll"][1]) == pytest.approx(float(w.flatten()[i]))
    # Doubling every weight leaves the normalised loss unchanged; one token at 0.5 vs 1.0 differs.
    l1, _, _ = weighted_nll(nll, w, w.sum())
    l2, _, _ = weighted_nll(nll, 2 * w, 2 * w.sum())
    torch.testing.assert_close(l1, l2)


def test_matches_independent_pytorch_computation(model):
    tokens, labels, w = _batch(3)
    b, s = tokens.shape
    logits = model(tokens, torch.arange(s).expand(b, s), block_causal_mask(torch.zeros(b, s, dtype=torch.long)))
    ref = reference_weighted_nll(logits, labels, w)
    ours, _, _ = weighted_nll(_per_token(model, tokens, labels), w, w.sum())
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    # and by hand, without any helper of ours:
    logp = torch.log_softmax(logits.double(), dim=-1).gather(-1, labels[..., None])[..., 0]
    by_hand = -(logp * w.double()).sum() / w.double().sum()
    assert abs(float(ours) - float(by_hand)) < 1e-5


def test_global_normalisation_across_unequal_micro_batches(model):
    """Two micro-batches with very different kept-token counts through megatron's schedule give
    the loss and gradients of one batch holding both (no per-micro-batch averaging)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from srft_megatron.training.loss import loss_func_for

    tokens, labels, w = _batch(4, b=2)
    w[0, :20] = 0.0  # micro-batch 0 keeps few tokens, micro-batch 1 many
    assert (w[0] > 0).sum() < (w[1] > 0).sum() / 2
    loss_full, grads_full = _loss_and_grads(model, tokens, labels, w)

    micro = [{"tokens": tokens[i:i + 1], "labels": labels[i:i + 1], "loss_weights": w[i:i + 1]} for i in range(2)]
    total = global_weight_sum(micro)

    def forward_step(it, m):
        mb = next(it)
        return _per_token(m, mb["tokens"], mb["labels"]), loss_func_for(mb["loss_weights"], total)

    model.config.calculate_per_token_loss = True
    model.config.finalize_model_grads_func = None  # no DDP wrapper here: grads just accumulate
    model.zero_grad()
    reports = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=iter(micro),
                                          model=[model], num_microbatches=2, seq_length=tokens.shape[1],
                                          micro_batch_size=1, forward_only=False)
    loss_sched = sum(r["weighted_nll"][0] for r in reports) / total
    assert abs(float(loss_sched) - float(loss_full)) < 1e-6
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads_full[name], rtol=1e-5, atol=1e-7)
    # Per-micro-batch averaging (what megatron does without per-token loss) would differ:
    per_mb = sum(float((_per_token(model, tokens[i:i+1], labels[i:i+1]) * w[i:i+1]).sum() / w[i].sum())
                 for i in range(2)) / 2
    assert abs(per_mb - float(loss_full)) > 1e-3


class _Docs:
    def __init__(self, docs):
        self.docs = docs

    def document(self, i):
        return self.docs[i]


def test_packed_sequence_loss_is_sum_of_document_losses(model):
    rng = np.random.RandomState(5)
    docs = []
    for n in (9, 14, 6, 11):
        docs.append((rng.randint(1, SHAPE.vocab_size, n).astype(np.int32),
                     (rng.rand(n) * (rng.rand(n) > 0.3)).astype(np.float32)))
    store = _Docs(docs)
    packed = collate([assemble_sample(store, [0, 1, 2, 3], 48)])
    assert packed["segment_ids"][0, :36].unique().tolist() == [0, 1, 2, 3]  # 4 documents, then padding
    assert packed["segment_ids"][0, 36:].unique().tolist() == [4] and float(packed["loss_weights"][0, 36:].sum()) == 0
    nll = _per_token(model, packed["tokens"], packed["labels"], packed["segment_ids"], packed["position_ids"])
    packed_sum = float((nll * packed["loss_weights"]).sum())
    alone_sum = 0.0
    for i in range(4):
        one = collate([assemble_sample(store, [i], len(docs[i][0]) - 1)])
        nll_one = _per_token(model, one["tokens"], one["labels"], one["segment_ids"], one["position_ids"])
        alone_sum += float((nll_one * one["loss_weights"]).sum())
    assert packed_sum == pytest.approx(alone_sum, rel=1e-5)
    # Without the block-diagonal mask documents would see each other and the loss would change.
    leaky = _per_token(model, packed["tokens"], packed["labels"], None, packed["position_ids"])
    assert abs(float((leaky * packed["loss_weights"]).sum()) - alone_sum) > 1e-3
