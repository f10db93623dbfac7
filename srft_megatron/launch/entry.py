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

from srft_megatron.errors import InputError

LATEST_PREFIX = "@latest:"


def resolve(arg: str) -> str:
    if not arg.startswith(LATEST_PREFIX):
        return arg
    directory = Path(arg[len(LATEST_PREFIX):])
    marker = directory / "latest"
    if not marker.is_file():
        raise InputError(f"no checkpoint to use: {marker} does not exist (did training save one?)",
                         file=str(marker))
    name = marker.read_text().strip()
    if not name or not (directory / name).is_dir():
        raise InputError(f"{marker} names {name!r}, which is not a checkpoint directory", file=str(marker))
    return str(directory / name)


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
