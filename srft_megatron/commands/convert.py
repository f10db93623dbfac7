"""Convert Qwen2/Qwen2.5 checkpoints Megatron <-> Hugging Face, and prove the result numerically.

    srft convert from-hf --hf Qwen2.5-Coder-32B-Instruct --output ckpt/init --tp 8 --pp 2
    srft convert to-hf --checkpoint runs/srft/checkpoints/iter_0001000 --output hf/srft-32b
    srft convert verify --hf hf/srft-32b --checkpoint runs/srft/checkpoints/iter_0001000 \\
        --trajectory ../shared/data/trajectories/function_calling_simple.traj

from-hf writes a megatron-core dist checkpoint (loadable by `srft train` via
`train.init_from` at any TP/PP); with --tp/--pp > 1 outside torchrun it starts tp x pp local
processes itself (or run it under `torchrun --nproc-per-node TPxPP -m srft_megatron.cli convert
from-hf ...`). to-hf streams any checkpoint (model-only or train state, any TP/PP) into a
sharded safetensors directory that transformers and vLLM load. verify runs both models on the
same tokens and exits 1 if the logits differ by more than --atol or greedy tokens disagree.
"""

from __future__ import annotations

import argparse
import json
import sys

from srft_megatron.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("from-hf", help="HF Qwen2ForCausalLM directory -> megatron-core dist checkpoint",
                       description="HF Qwen2ForCausalLM directory -> megatron-core dist checkpoint.")
    p.add_argument("--hf", required=True, metavar="DIR", help="HF model directory (config.json + safetensors)")
    p.add_argument("--output", required=True, metavar="CKPT", help="checkpoint directory to write")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size to write with (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline-parallel size to write with (default 1)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                   help="parameter dtype of the checkpoint (default: the HF config's torch_dtype)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output")

    p = sub.add_parser("to-hf", help="megatron-core dist checkpoint (any TP/PP) -> HF directory",
                       description="megatron-core dist checkpoint (any TP/PP) -> HF directory.")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="dist checkpoint directory")
    p.add_argument("--output", required=True, metavar="DIR", help="HF directory to write")
    p.add_argument("--tokenizer", default="auto",
                   help="tokenizer to ship: an HF directory, 'qwen2.5' (offline build), 'none', or 'auto' "
                        "(default: the files of the HF directory the checkpoint was converted from, else qwen2.5)")
    p.add_argument("--model", default=None,
                   help="model shape (QWEN2_SHAPES name or config.json) if the checkpoint records none")
    p.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"),
                   help="dtype of the safetensors (default: as stored in the checkpoint)")
    p.add_argument("--max-shard-gb", type=float, default=5.0, help="size of each safetensors shard (GB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("verify", help="compare HF and Megatron logits on the same tokens",
                       description="Compare HF and Megatron logits on the same tokens.")
    p.add_argument("--hf", required=True, metavar="DIR", help="HF model directory")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="dist checkpoint directory")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--trajectory", metavar="FILE",
                     help="tokenise the first trajectory of a .traj/.jsonl file with the chat template")
    src.add_argument("--text", help="tokenise this text")
    p.add_argument("--tokenizer", default="qwen2.5", help="tokenizer for --trajectory/--text (default qwen2.5)")
    p.add_argument("--max-tokens", type=int, default=256, help="use at most this many tokens (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of random tokens when no text is given")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="compute dtype (default fp32)")
    p.add_argument("--atol", type=float, default=1e-3, help="max allowed |logit diff| (default 1e-3)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _tokens(args, vocab_rows: int) -> list[int]:
    if args.trajectory:
        from srft_megatron.convert.verify import trajectory_tokens

        ids = trajectory_tokens(args.trajectory, args.tokenizer)
    elif args.text:
        from srft_megatron import load_tokenizer

        ids = load_tokenizer(args.tokenizer)(args.text)["input_ids"]
    else:
        import torch

        gen = torch.Generator().manual_seed(args.seed)
        ids = torch.randint(0, vocab_rows, (args.max_tokens,), generator=gen).tolist()
    return ids[: args.max_tokens]


def main(args: argparse.Namespace) -> int:
    if args.action in ("from-hf", "verify"):  # these build megatron models in this process
        from srft_megatron.parallel.cpu_compat import enable_cpu_compat

        enable_cpu_compat()  # on the CPU where there is no GPU (no-op with CUDA)
    if args.action == "from-hf":
        from srft_megatron.convert.from_hf import convert_hf_to_megatron

        convert_hf_to_megatron(args.hf, args.output, tp=args.tp, pp=args.pp, precision=args.precision,
                               overwrite=args.overwrite)
        print(f"wrote {args.output} (megatron-core dist checkpoint, written at tp={args.tp} pp={args.pp})")
        return 0
    if args.action == "to-hf":
        from srft_megatron.convert.to_hf import convert_megatron_to_hf

        tokenizer = None if args.tokenizer.lower() == "none" else args.tokenizer
        out = convert_megatron_to_hf(args.checkpoint, args.output, tokenizer=tokenizer, model=args.model,
                                     dtype=args.dtype, max_shard_bytes=int(args.max_shard_gb * 1024**3),
                                     overwrite=args.overwrite, progress=not args.quiet)
        print(f"wrote {out} (HF Qwen2ForCausalLM)")
        return 0
    if args.action == "verify":
        from srft_megatron.convert.from_hf import shape_from_hf
        from srft_megatron.convert.hf_io import read_hf_config
        from srft_megatron.convert.verify import verify

        shape = shape_from_hf(read_hf_config(args.hf), args.hf)
        ids = _tokens(args, shape.vocab_size)
        report = verify(args.hf, args.checkpoint, ids, precision=args.precision)
        ok = report.passed(args.atol)
        if args.json:
            print(json.dumps({**report.to_json(), "atol": args.atol, "passed": ok}))
        else:
            print(report.table())
            print(f"{'PASS' if ok else 'FAIL'} (atol {args.atol:g}, greedy agreement must be 100%)")
        return 0 if ok else 1
    raise InputError(f"unknown action {args.action!r}")


if __name__ == "__main__":
    from srft_megatron.cli import main as cli_main

    sys.exit(cli_main(["convert", *sys.argv[1:]]))
