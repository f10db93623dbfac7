"""Size a training run before it queues: exact parameter count, per-GPU memory and tokens/s
for every TP/PP/CP/DP layout, best first (see `srft_megatron/plan.py` for the formulas).

    srft plan --model qwen2.5-coder-32b-instruct --seq-length 32768 --nodes 4 --gpus-per-node 8 \\
        --gpu-memory-gb 80
    srft plan --model qwen2.5-coder-32b-instruct-128k --seq-length 131072 --nodes 8 \\
        --gpus-per-node 8 --gpu-memory-gb 80 --json plan.json
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a named Qwen2.5 shape or a HF config.json / directory")
    parser.add_argument("--seq-length", type=int, required=True, help="tokens per packed training sequence")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int, required=True)
    parser.add_argument("--gpu-memory-gb", type=float, required=True, help="memory of one GPU, GiB")
    parser.add_argument("--global-batch-size", type=int, default=32, help="sequences per optimizer step")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of one GPU (default: H100 SXM, 989)")
    parser.add_argument("--mfu", type=float, default=0.35, help="fraction of peak sustained (default 0.35)")
    parser.add_argument("--headroom", type=float, default=0.10,
                        help="fraction of GPU memory kept free for CUDA context, NCCL, fragmentation")
    parser.add_argument("--top", type=int, default=10, help="layouts shown on the terminal")
    parser.add_argument("--json", metavar="FILE", help="write every layout as JSON to FILE")


def main(args: argparse.Namespace) -> int:
    from srft_megatron.io import write_json
    from srft_megatron.model.configs import get_shape
    from srft_megatron.plan import format_plan, plan

    result = plan(get_shape(args.model), seq_length=args.seq_length, nodes=args.nodes,
                  gpus_per_node=args.gpus_per_node, gpu_memory_gb=args.gpu_memory_gb,
                  global_batch_size=args.global_batch_size, precision=args.precision,
                  peak_tflops=args.peak_tflops, mfu=args.mfu, headroom=args.headroom)
    result["model"] = args.model
    print(format_plan(result, top=args.top))
    if args.json:
        write_json(args.json, result)
    return 0
