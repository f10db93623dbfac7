"""`srft`: the one command-line entry point, with a sub-command per pipeline stage.

Each sub-command lives in `srft_megatron/commands/<name>.py` and defines
`add_arguments(parser)` and `main(args) -> int`. Modules are imported only when their
command runs, so `srft --help` and light stages (ingest, report) never pay for importing
torch or megatron-core.

    srft ingest ../shared/data/trajectories/*.traj -o trajectories.jsonl
    srft preprocess --trajectories trajectories.jsonl --labels labels.jsonl --policy srft \\
        --tokenizer qwen2.5 --seq-length 32768 --output-prefix data/srft
    torchrun --nproc-per-node 8 .venv/bin/srft train --config configs/qwen2.5-7b-srft.yaml
"""

from __future__ import annotations

import argparse
import importlib
import sys

from srft_megatron.errors import ConfigError, DatasetError, InputError

# name -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("srft_megatron.commands.ingest", "normalise SWE-agent .traj / SWE-smith rows into trajectories.jsonl"),
    "label": ("srft_megatron.commands.label", "label every assistant step with a critic LLM on vLLM replicas"),
    "critic-eval": ("srft_megatron.commands.critic_eval", "precision/recall/F1 of critic labels against reference labels"),
    "preprocess": ("srft_megatron.commands.preprocess", "tokenise trajectories into Megatron indexed datasets with loss weights"),
    "report": ("srft_megatron.commands.report", "summarise a preprocessed dataset (steps by label, kept vs rejected, lengths)"),
    "train": ("srft_megatron.commands.train", "train Qwen2.5 on megatron-core with the step-weighted loss"),
    "convert": ("srft_megatron.commands.convert", "convert checkpoints Megatron <-> Hugging Face and verify them"),
    "evaluate": ("srft_megatron.commands.evaluate", "serve a model with vLLM and evaluate it on SWE-bench with repeated rollouts"),
    "check-scaffold": ("srft_megatron.commands.check_scaffold", "replay a trajectory through the evaluation agent; prove its prompts equal the training render"),
    "report-eval": ("srft_megatron.commands.report_eval", "resolved rates, pass@k and bootstrap CIs from harness reports"),
    "view": ("srft_megatron.commands.view", "render labelled trajectories as a static HTML page"),
    "plan": ("srft_megatron.commands.plan", "parameters, per-GPU memory and tokens/s of every parallel layout"),
    "launch": ("srft_megatron.commands.launch", "submit pipeline stages to SLURM (sbatch or nemo-run)"),
    "matrix": ("srft_megatron.commands.matrix", "the paper's experiment matrix: a pipeline per row, launched and compared"),
    "demo": ("srft_megatron.commands.demo", "run the whole pipeline on the bundled example"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<{max(map(len, COMMANDS))}}  {desc}" for name, (_, desc) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="srft",
        description="Step Rejection Fine-Tuning on megatron-core.",
        epilog=f"stages:\n{lines}\n\nRun 'srft STAGE --help' for the options of a stage.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stage", nargs="?", choices=list(COMMANDS), metavar="STAGE")
    return parser


def _quiet_optional_backends() -> None:
    """megatron-core warns at import that TE/apex are absent; on CPU that is expected, not news.

    Likewise its rank lookup outside torch.distributed: single-process stages (preprocess,
    report, convert to-hf) read indexed datasets as rank 0, which is what the default gives;
    under torchrun RANK is set and the warning never fires."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
    warnings.filterwarnings("ignore", message="Could not determine rank from torch.distributed")
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_optional_backends()
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name = argv[0]
    if name not in COMMANDS:
        top.error(f"unknown stage {name!r} (choose from {', '.join(COMMANDS)})")
    module_name, desc = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"srft {name}", description=(module.__doc__ or desc).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except (InputError, ConfigError, DatasetError, FileNotFoundError) as exc:
        print(f"srft {name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
