"""torchrun worker for `test_plan.py`: the bytes megatron-core allocates for several layouts.

    torchrun --nproc-per-node 2 tests/training/plan_worker.py SPEC.json OUT_DIR

SPEC.json: {"config": ..., "runs": [{"name": ..., "overrides": [...]}, ...]}. Each run builds a
real `Trainer` (model, DDP buffers, optimizer exactly as training does), gives the optimizer its
Adam state, and writes OUT_DIR/NAME.rank{R}.json with the bytes this rank holds for weights,
gradients and optimizer state, counted from the tensors themselves (storages deduplicated)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from srft_megatron.parallel.cpu_compat import enable_cpu_compat
from srft_megatron.parallel.dims import destroy
from srft_megatron.training.checkpoint import _init_optimizer_state
from srft_megatron.training.config import load_config
from srft_megatron.training.trainer import Trainer


def _storage_bytes(tensors) -> tuple[int, set[int]]:
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values()), set(seen)


def measure(trainer: Trainer) -> dict:
    from megatron.core import parallel_state as ps

    params = [p for chunk in trainer.model for p in chunk.parameters()]
    weights, weight_storages = _storage_bytes(params)
    gradients, _ = _storage_bytes(p.main_grad for p in params)
    _init_optimizer_state(trainer.optimizer)
    optimizer = 0
    for opt in getattr(trainer.optimizer, "chained_optimizers", [trainer.optimizer]):
        inner = opt.optimizer
        for group in inner.param_groups:
            for main in group["params"]:  # fp32 main params: copies unless views of the model's
                if main.untyped_storage().data_ptr() not in weight_storages:
                    optimizer += main.numel() * main.element_size()
                state = inner.state.get(main, {})
                optimizer += sum(state[k].numel() * state[k].element_size()
                                 for k in ("exp_avg", "exp_avg_sq") if k in state)
    return {"rank": dist.get_rank(), "tp_rank": ps.get_tensor_model_parallel_rank(),
            "pp_rank": ps.get_pipeline_model_parallel_rank(), "dp_rank": ps.get_data_parallel_rank(),
            "weights": weights, "gradients": gradients, "optimizer": optimizer}


def main(spec_path: str, out_dir: str) -> int:
    enable_cpu_compat()  # this worker runs megatron-core; on the CPU here (no-op with CUDA)
    spec = json.loads(Path(spec_path).read_text())
    out = Path(out_dir)
    for run in spec["runs"]:
        trainer = Trainer(load_config(spec["config"], run["overrides"]), out / run["name"])
        record = measure(trainer)
        (out / f"{run['name']}.rank{record['rank']}.json").write_text(json.dumps(record))
        del trainer
        destroy()
    destroy(process_group=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
