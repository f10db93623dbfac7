"""Run `srft STAGE ARGS...` on a cluster node, resolving references known only at run time.

Why: a pipeline submits every stage at once, before training has written anything, so the
convert stage cannot be told the checkpoint's name at submission. `@latest:DIR` stands for
`DIR/<name in DIR/latest>` (the newest complete checkpoint, as `srft train` records it) and is
resolved here, when the job starts.

    python -m srft_megatron.launch.entry convert to-hf --checkpoint @latest:runs/x/train/checkpoints \
        --output runs/x/hf
"""

from __future__ import annotations

import sys
from pathlib import Path

from srft_megatron.errors import CheckpointError, InputError

LATEST_PREFIX = "@latest:"


def resolve(arg: str) -> str:
    """`@latest:DIR` -> the checkpoint DIR/latest names, by the checkpoint module's own rule."""
    if not arg.startswith(LATEST_PREFIX):
        return arg
    from srft_megatron.training.checkpoint import LATEST, latest_checkpoint

    directory = Path(arg[len(LATEST_PREFIX):])
    try:
        ckpt = latest_checkpoint(directory)
    except CheckpointError as exc:
        raise InputError(str(exc), file=str(directory / LATEST)) from None
    if ckpt is None:
        raise InputError(f"no checkpoint to use: {directory / LATEST} does not exist (did training save one?)",
                         file=str(directory / LATEST))
    return str(ckpt)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = [resolve(a) for a in argv]
    except InputError as exc:
        print(f"srft {argv[0] if argv else ''}: error: {exc}", file=sys.stderr)
        return 2
    from srft_megatron.cli import main as srft_main

    return srft_main(argv)


if __name__ == "__main__":
    sys.exit(main())
