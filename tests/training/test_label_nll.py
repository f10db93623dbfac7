"""Per-label validation NLL (training/label_nll.py) against an independent PyTorch computation,
and the same numbers when the batch is split over micro-batches and data-parallel ranks."""

from __future__ import annotations

import torch

from srft_megatron.dataset import LABEL_CODES
from srft_megatron.training.label_nll import (RESOLVED_CODES, eval_metrics, eval_sums, label_nll_metrics,
                                              label_nll_sums)
from srft_megatron.training.loss import reference_weighted_nll

VOCAB = 50


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 24, VOCAB, generator=g) * 3
    targets = torch.randint(0, VOCAB, (4, 24), generator=g)
    codes = torch.randint(0, len(LABEL_CODES), (4, 24), generator=g)
    codes[:, -3:] = -1  # padding
    weights = torch.rand(4, 24, generator=g)
    weights[(codes == LABEL_CODES["context"]) | (codes == -1)] = 0.0
    weights[codes == LABEL_CODES["harmful"]] = 0.0  # srft: present, never trained
    return logits, targets, codes, weights


def test_metrics_equal_an_independent_computation():
    logits, targets, codes, weights = batch()
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    got = label_nll_metrics(label_nll_sums(nll.view(4, 24), codes, weights))
    assert abs(got["val/loss"] - float(reference_weighted_nll(logits, targets, weights))) <= 1e-5
    for label, code in LABEL_CODES.items():
        mask = codes == code
        if label == "context":
            assert f"val/nll/{label}" not in got
            continue
        expected = torch.stack([torch.nn.functional.cross_entropy(logits[i, j], targets[i, j])
                                for i, j in mask.nonzero()]).mean()
        assert abs(got[f"val/nll/{label}"] - float(expected)) <= 1e-5, label
    assert got["val/nll/harmful"] > 0  # measured although its weight is 0


def test_sums_over_micro_batches_and_ranks_give_the_whole_batch():
    logits, targets, codes, weights = batch(1)
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                            reduction="none").view(4, 24)
    whole = label_nll_metrics(label_nll_sums(nll, codes, weights))
    per_rank = [sum(label_nll_sums(nll[i:i + 1], codes[i:i + 1], weights[i:i + 1]) for i in (r, r + 1))
                for r in (0, 2)]  # DP=2, two micro-batches of one sample each
    split = label_nll_metrics(per_rank[0] + per_rank[1])  # what the all-reduce sums
    assert split.keys() == whole.keys()
    assert all(abs(split[k] - whole[k]) <= 1e-12 for k in whole)
    assert {f"val/nll/{name}" for name in LABEL_CODES if name != "context"} <= whole.keys()


def test_resolved_and_unresolved_nll_cover_step_tokens_only():
    logits, targets, codes, weights = batch(2)
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(4, 24)
    resolved = torch.tensor([RESOLVED_CODES["resolved"], RESOLVED_CODES["unresolved"],
                             RESOLVED_CODES["unknown"], RESOLVED_CODES["resolved"]])[:, None].expand(4, 24).clone()
    resolved[codes == -1] = -1
    got = eval_metrics(eval_sums(nll[:2], codes[:2], weights[:2], resolved[:2])
                       + eval_sums(nll[2:], codes[2:], weights[2:], resolved[2:]))  # two micro-batches
    step = (codes > LABEL_CODES["context"])  # padding (-1) and context excluded
    for name, rows in (("resolved", [0, 3]), ("unresolved", [1])):
        mask = step & (resolved == RESOLVED_CODES[name])
        assert mask[rows].sum() == mask.sum() > 0
        assert abs(got[f"val/nll/{name}"] - float(nll[mask].double().mean())) <= 1e-9, name
    assert got["val/tokens"] == int((codes >= 0).sum())
    assert {k: v for k, v in got.items() if k.startswith("val/nll/") and k.split("/")[-1] in LABEL_CODES} == {
        k: v for k, v in label_nll_metrics(label_nll_sums(nll, codes, weights)).items() if k.startswith("val/nll/")}
