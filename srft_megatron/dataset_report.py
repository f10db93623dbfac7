"""`srft report PREFIX`: the paper's Table 1 for a preprocessed dataset.

Steps by label and by resolved status, kept vs rejected steps, the weighted-token fraction and
the document length distribution. Label counts come from the metadata written by preprocess;
lengths are read from the token dataset's index itself, so the report also shows what is on disk.

With `--seq-length N` it also shows the packing training would get at N (`packing: {seq_length,
utilisation, samples}` per epoch), computed by `training.packing` — the function that packs, not
an estimate — and refuses, naming the trajectory, a dataset with a document that cannot fit whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from srft_megatron.trajectory import LABELS

STATUSES = ("resolved", "unresolved", "unknown")


def dataset_summary(prefix: str, seq_length: int | None = None, seed: int = 1234) -> dict[str, Any]:
    """The report's numbers; with `seq_length`, also `packing` at that length (see module doc)."""
    from srft_megatron.dataset import open_dataset

    ds = open_dataset(prefix)
    lengths = np.asarray(ds.tokens.sequence_lengths, dtype=np.int64)
    meta, counts = ds.meta, ds.meta["counts"]
    pct = {f"p{q}": int(np.percentile(lengths, q)) for q in (10, 50, 90, 99)} if lengths.size else {}
    summary = {
        "prefix": prefix,
        "policy": meta["policy"]["name"],
        "tokenizer": meta["tokenizer"]["name"],
        "seq_length": meta["seq_length"],
        "documents": int(lengths.size),
        "tokens": int(lengths.sum()),
        "weighted_tokens": counts["weighted_tokens"],
        "weighted_fraction": counts["weighted_tokens"] / max(int(lengths.sum()), 1),
        "steps_by_label": counts["steps_by_label"],
        "kept_steps": counts["kept_steps"],
        "rejected_steps": counts["rejected_steps"],
        "skipped": counts["skipped"],
        "rejected": counts["rejected"],
        "truncated": counts["truncated"],
        "newline_steps": counts.get("newline_steps", 0),  # kept as generated (render.py docstring)
        "lengths": {"min": int(lengths.min()) if lengths.size else 0,
                    "mean": float(lengths.mean()) if lengths.size else 0.0,
                    "max": int(lengths.max()) if lengths.size else 0, **pct},
    }
    if seq_length is not None:
        summary["packing"] = _packing(prefix, meta, lengths, seq_length, seed)
    return summary


def _packing(prefix: str, meta: dict[str, Any], lengths: np.ndarray, seq_length: int, seed: int) -> dict[str, Any]:
    from srft_megatron.errors import InputError
    from srft_megatron.training.packing import packing_summary, too_long_documents

    if seq_length < 1:
        raise InputError(f"--seq-length must be positive, got {seq_length}")
    too_long = too_long_documents(lengths, seq_length)
    if too_long.size:
        doc = int(too_long[0])
        traj_id = meta["documents"][doc]["id"] if doc < len(meta.get("documents", [])) else None
        raise InputError(f"document {doc} has {int(lengths[doc])} tokens, more than --seq-length + 1 = "
                         f"{seq_length + 1} ({too_long.size} such; documents are never split: preprocess "
                         "at this --seq-length)", file=prefix, traj_id=traj_id)
    return packing_summary(lengths, seq_length, seed)


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{summary['prefix']}[/bold]  policy={summary['policy']}  "
                  f"tokenizer={summary['tokenizer']}  seq_length={summary['seq_length']}")
    steps = summary["steps_by_label"]
    statuses = [s for s in STATUSES if sum(steps[s].values())]
    table = Table(title="Steps by label (Table 1)")
    table.add_column("label")
    for status in statuses:
        table.add_column(status, justify="right")
    table.add_column("total", justify="right")
    for label in (*LABELS, "unlabelled"):
        row = [steps[s][label] for s in statuses]
        if sum(row) or label != "unlabelled":
            table.add_row(label, *map(str, row), str(sum(row)))
    table.add_row("[bold]kept[/bold]", *[str(summary["kept_steps"][s]) for s in statuses],
                  str(sum(summary["kept_steps"][s] for s in statuses)))
    table.add_row("[bold]rejected (weight 0)[/bold]", *[str(summary["rejected_steps"][s]) for s in statuses],
                  str(sum(summary["rejected_steps"][s] for s in statuses)))
    console.print(table)
    tok = Table(title="Tokens and documents")
    tok.add_column("quantity")
    tok.add_column("value", justify="right")
    tok.add_row("documents", str(summary["documents"]))
    tok.add_row("tokens", str(summary["tokens"]))
    tok.add_row("weighted tokens", f"{summary['weighted_tokens']:.0f}")
    tok.add_row("weighted fraction", f"{summary['weighted_fraction']:.2%}")
    for key, value in summary["lengths"].items():
        tok.add_row(f"length {key}", f"{value:.0f}")
    tok.add_row("cut at a step boundary", str(summary["truncated"]))
    tok.add_row("steps starting with a newline", str(summary["newline_steps"]))
    for reason, n in {**summary["skipped"], **summary["rejected"]}.items():
        tok.add_row(f"skipped: {reason}", str(n))
    console.print(tok)
    if "packing" in summary:
        packing = summary["packing"]
        console.print(f"packing at seq_length {packing['seq_length']}: utilisation {packing['utilisation']:.2%}, "
                      f"{packing['samples']} samples per epoch (best-fit-decreasing, training/packing.py)")
