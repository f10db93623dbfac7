"""Stand-in trainer for the launcher tests: proves the SLURM machinery, not the model.

Accepts `train --config FILE --run-dir DIR [steps=N] [step_seconds=S]` like `srft train`, joins
the torchrun world over gloo, and each step all-reduces (rank + 1) so the sum proves every rank
of every node took part. Rank 0 writes `DIR/checkpoints/latest.json` every step (atomically) and
on SIGTERM, like the real trainer, and a resumed run starts after the checkpointed step.
`DIR/result-<restart>.json` records world size, node ids, the all-reduce sums and where it
resumed from, for the tests to assert on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import torch
import torch.distributed as dist


def _write(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(obj, handle)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    assert argv[0] == "train", argv
    run_dir = argv[argv.index("--run-dir") + 1]
    config = argv[argv.index("--config") + 1]
    opts = dict(a.split("=", 1) for a in argv[1:] if "=" in a and not a.startswith("--"))
    steps, step_seconds = int(opts.get("steps", 3)), float(opts.get("step_seconds", 0))
    fail = opts.get("fail")
    if fail:
        print(f"fake_train: failing on purpose: {fail}", file=sys.stderr)
        return 3
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ckpt = os.path.join(run_dir, "checkpoints", "latest.json")
    start = json.load(open(ckpt))["step"] if os.path.exists(ckpt) else 0
    sums, nodes = [], [None] * world
    dist.all_gather_object(nodes, os.environ.get("SLURM_NODEID"))
    step = start
    while step < steps:
        t = torch.tensor([float(rank + 1)])
        dist.all_reduce(t)
        sums.append(t.item())
        time.sleep(step_seconds)
        step += 1
        flag = torch.tensor([1.0 if stop["flag"] else 0.0])
        dist.all_reduce(flag)  # every rank stops at the same step
        if rank == 0:
            _write(ckpt, {"step": step})
        if flag.item() > 0:
            print(f"fake_train: SIGTERM: checkpointed step {step}, exiting", file=sys.stderr)
            break
    if rank == 0:
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        _write(os.path.join(run_dir, f"result-{restart}.json"),
               {"world": world, "nodes": nodes, "sums": sums, "resumed_from": start,
                "last_step": step, "config": config, "preempted": stop["flag"]})
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
