"""Several conversions and verifications in one process launch (layouts switch in-process).

    torchrun --nproc-per-node 2 tests/convert/worker.py from-hf:HF_DIR:OUT:TP:PP [...]
    python tests/convert/worker.py from-hf:HF_DIR:OUT:1:1 verify:HF_DIR:CKPT:NTOKENS [...]

from-hf jobs need tp x pp = the world size; verify jobs run on rank 0 of a world of one and
print `VERIFY <json>` lines. One launch that switches layouts costs ~0.2 s a job instead of
~10 s a process start (see notes/megatron-core-cpu.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(jobs: list[str]) -> None:
    import torch

    from srft_megatron.convert.from_hf import _rank_main
    from srft_megatron.convert.verify import verify
    from srft_megatron.parallel.cpu_compat import enable_cpu_compat
    from srft_megatron.parallel.dims import destroy

    enable_cpu_compat()  # this worker runs megatron-core; on the CPU here (no-op with CUDA)
    for job in jobs:
        kind, *fields = job.split(":")
        if kind == "from-hf":
            hf_dir, out, tp, pp = fields
            _rank_main(hf_dir, out, int(tp), int(pp), precision=None, overwrite=False)
        elif kind == "verify":
            hf_dir, ckpt, n = fields
            ids = torch.randint(0, 250, (int(n),), generator=torch.Generator().manual_seed(0)).tolist()
            report = verify(hf_dir, ckpt, ids)
            print("VERIFY " + json.dumps({"hf": hf_dir, "checkpoint": ckpt, **report.to_json()}), flush=True)
        else:
            raise SystemExit(f"unknown job {job!r}")
    destroy(process_group=True)


if __name__ == "__main__":
    main(sys.argv[1:])
