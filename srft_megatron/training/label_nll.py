"""Per-label validation NLL: how likely the model finds each kind of step (issue 13).

What a user of SRFT wants to watch is not the one weighted loss but the NLL of each kind of step
on held-out trajectories: kept (`good`) steps should get more likely, `harmful` steps — in
context, never trained — should not follow. The dataset's label channel (`dataset.LABEL_CODES`,
`PREFIX_labels`) says which kind of step each token belongs to.

The contract, so that any parallel layout gives the same numbers as one process:

1. per micro-batch, `label_nll_sums` returns *sums*, never means: for every label code, the sum
   of NLL over its tokens, their count, the weighted NLL sum and the weight sum (float64);
2. the caller adds them over micro-batches and all-reduces them over data parallel (the same
   group and the same sum as `loss.global_weight_sum`); with PP only the last stage has them;
3. `label_nll_metrics` divides once, at the end: `val/nll/<label>` is the mean NLL over the
   tokens of that label (unweighted: a harmful step weighs 0 and is still measured),
   `val/loss` is the training objective (sum w*NLL / sum w, `loss.py`).

Alignment: like the loss weights, the codes are those of the *predicted* token — for inputs
`t[:-1]` and targets `t[1:]` the codes are `c[1:]` (`dataset.shifted_example`'s shift).

Not wired into the trainer yet (issue 13): this module owns the rule and is tested alone.
"""

from __future__ import annotations

import torch

from srft_megatron.dataset import LABEL_CODES

COLUMNS = ("nll_sum", "tokens", "weighted_nll_sum", "weight_sum")


def label_nll_sums(per_token_nll: torch.Tensor, label_codes: torch.Tensor,
                   loss_weights: torch.Tensor | None = None) -> torch.Tensor:
    """`[len(LABEL_CODES), 4]` float64 sums (`COLUMNS`) of one micro-batch; add over
    micro-batches and all-reduce over data parallel before `label_nll_metrics`.

    Positions whose code is outside `LABEL_CODES` (e.g. -1 on padding) are ignored."""
    if per_token_nll.shape != label_codes.shape:
        raise ValueError(f"NLL {tuple(per_token_nll.shape)} and label codes {tuple(label_codes.shape)} differ")
    nll = per_token_nll.detach().double().flatten()
    codes = label_codes.to(nll.device, torch.long).flatten()
    w = (torch.zeros_like(nll) if loss_weights is None
         else loss_weights.detach().to(nll.device, torch.float64).flatten())
    valid = (codes >= 0) & (codes < len(LABEL_CODES))
    codes, nll, w = codes[valid], nll[valid], w[valid]
    out = torch.zeros(len(LABEL_CODES), len(COLUMNS), dtype=torch.float64, device=nll.device)
    for column, values in enumerate((nll, torch.ones_like(nll), w * nll, w)):
        out[:, column].index_add_(0, codes, values)
    return out


def label_nll_metrics(sums: torch.Tensor, prefix: str = "val") -> dict[str, float]:
    """`{prefix}/loss` and `{prefix}/nll/<label>` for every step label with tokens (the
    context's NLL, tool output included, says nothing about the method and is left out)."""
    sums = sums.detach().double().cpu()
    out: dict[str, float] = {}
    weight_sum = float(sums[:, 3].sum())
    if weight_sum > 0:
        out[f"{prefix}/loss"] = float(sums[:, 2].sum()) / weight_sum
    for label, code in LABEL_CODES.items():
        tokens = float(sums[code, 1])
        if label != "context" and tokens > 0:
            out[f"{prefix}/nll/{label}"] = float(sums[code, 0]) / tokens
    return out
