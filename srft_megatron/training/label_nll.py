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

By outcome: `val/nll/resolved` and `val/nll/unresolved` are the mean NLL over the *step* tokens
(every label but context) of documents whose trajectory was resolved / unresolved
(`resolved_nll_sums`; per position the batch carries the `RESOLVED_CODES` code of its document,
read from the per-document records preprocess writes into meta.json, `documents[i].resolved`).

`eval_sums` / `eval_metrics` put both into one flat float64 vector, so that the evaluation
(`training/evaluation.py`) reduces everything with one all-reduce.
"""

from __future__ import annotations

import torch

from srft_megatron.dataset import LABEL_CODES

COLUMNS = ("nll_sum", "tokens", "weighted_nll_sum", "weight_sum")
# Outcome of a document's trajectory, per position (-1 on padding); `unknown`: resolved is null.
RESOLVED_CODES = {"unknown": 0, "resolved": 1, "unresolved": 2}


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


def resolved_nll_sums(per_token_nll: torch.Tensor, label_codes: torch.Tensor,
                      resolved: torch.Tensor) -> torch.Tensor:
    """`[len(RESOLVED_CODES), 2]` float64 (NLL sum, token count) over the step tokens (a label
    code other than context) of each trajectory outcome; positions outside the codes are ignored."""
    nll = per_token_nll.detach().double().flatten()
    codes = label_codes.to(nll.device, torch.long).flatten()
    status = resolved.to(nll.device, torch.long).flatten()
    step = (codes > LABEL_CODES["context"]) & (codes < len(LABEL_CODES))
    valid = step & (status >= 0) & (status < len(RESOLVED_CODES))
    out = torch.zeros(len(RESOLVED_CODES), 2, dtype=torch.float64, device=nll.device)
    out[:, 0].index_add_(0, status[valid], nll[valid])
    out[:, 1].index_add_(0, status[valid], torch.ones_like(nll[valid]))
    return out


EVAL_SIZE = len(LABEL_CODES) * len(COLUMNS) + len(RESOLVED_CODES) * 2


def eval_sums(per_token_nll: torch.Tensor, label_codes: torch.Tensor, loss_weights: torch.Tensor,
              resolved: torch.Tensor) -> torch.Tensor:
    """Flat `[EVAL_SIZE]` float64 sums of one micro-batch: `label_nll_sums` then `resolved_nll_sums`."""
    return torch.cat([label_nll_sums(per_token_nll, label_codes, loss_weights).flatten(),
                      resolved_nll_sums(per_token_nll, label_codes, resolved).flatten()])


def eval_metrics(sums: torch.Tensor, prefix: str = "val") -> dict[str, float]:
    """The metrics of reduced `eval_sums`: `label_nll_metrics`, `{prefix}/nll/resolved` and
    `/unresolved` (when they have tokens) and `{prefix}/tokens` (positions with a label code)."""
    sums = sums.detach().double().cpu()
    n = len(LABEL_CODES) * len(COLUMNS)
    by_label = sums[:n].view(len(LABEL_CODES), len(COLUMNS))
    out = label_nll_metrics(by_label, prefix)
    by_outcome = sums[n:].view(len(RESOLVED_CODES), 2)
    for name in ("resolved", "unresolved"):
        nll_sum, tokens = (float(x) for x in by_outcome[RESOLVED_CODES[name]])
        if tokens > 0:
            out[f"{prefix}/nll/{name}"] = nll_sum / tokens
    out[f"{prefix}/tokens"] = int(by_label[:, 1].sum())
    return out
