"""torchrun worker for the multi-rank training tests: runs several layouts in one launch.

    torchrun --nproc-per-node 2 tests/training/dist_worker.py SPEC.json

SPEC.json: {"runs": [{"run_dir": ..., "overrides": [...]}, ...]}. Each run is a full `Trainer`
(process groups re-created per layout; torch.distributed is started once)."""

from __future__ import annotations

import json
import sys

from srft_megatron.parallel.cpu_compat import enable_cpu_compat
from srft_megatron.parallel.dims import destroy
from srft_megatron.training.config import load_config
from srft_megatron.training.trainer import Trainer


def main(spec_path: str) -> int:
    enable_cpu_compat()  # this worker runs megatron-core; on the CPU here (no-op with CUDA)
    spec = json.loads(open(spec_path).read())
    for run in spec["runs"]:
        cfg = load_config(spec["config"], run["overrides"])
        code = Trainer(cfg, run["run_dir"]).train()
        if code:
            return code
        destroy()
    destroy(process_group=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
