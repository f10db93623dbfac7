"""Run the whole SRFT pipeline on the bundled examples, on CPU, in minutes.

    make demo                      # = .venv/bin/srft demo
    make demo CRITIC=1             # label with a critic on a local vLLM CPU server instead of the expert labels
    srft demo --output demo-output --steps 20 --tensor-parallel 2

Why: a newcomer should see SRFT work end to end on a laptop before booking a cluster. Every
stage is the real command (a subprocess of `srft <stage>`, `torchrun` for training) on the real
data path: the 8 hand-written SWE-agent trajectories of examples/ → ingest → labels (the expert
labels of examples/labels.jsonl, or `srft label` against a tiny model on vLLM with --critic) →
an HTML view of the labelled steps → preprocess with the real Qwen2.5 tokenizer → train a tiny
Qwen2-shaped model with TP=2 over two processes (with the per-label validation NLL of its
documents before and after) → convert to Hugging Face → load it with
transformers and generate → `srft report`. After each stage the driver checks its output and
prints what it produced and where; at the end, the timings and the same pipeline on a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from srft_megatron.errors import ConfigError
from srft_megatron.trajectory import is_step

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MARKER = ".srft-demo"
STAGES = ("ingest", "label", "view", "preprocess", "train", "convert", "generate", "report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="demo-output", metavar="DIR",
                        help="directory for everything the demo writes (default: %(default)s; emptied first)")
    parser.add_argument("--critic", action="store_true",
                        help="label with a critic LLM (a tiny random model on a local vLLM CPU server) "
                             "instead of the expert labels; also scores it with srft critic-eval")
    parser.add_argument("--steps", type=int, default=20,
                        help="training steps (default: %(default)s: the weighted loss falls by ~2.6 nats)")
    parser.add_argument("--tensor-parallel", type=int, default=2, metavar="TP",
                        help="tensor-parallel size = number of training processes (default: %(default)s)")
    parser.add_argument("--seq-length", type=int, default=2048,
                        help="training sequence length; longer trajectories are cut (default: %(default)s)")
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"),
                        help="training config (default: configs/tiny.yaml, model tiny-qwen-vocab)")
    parser.add_argument("--policy", default="srft", help="weight policy for preprocess (default: %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=24, help="tokens to generate with the converted model")


@dataclass
class StageResult:
    name: str
    seconds: float = 0.0
    outputs: list[tuple[str, Path]] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)


class DemoError(RuntimeError):
    pass


class Demo:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.output).resolve()
        self.logs = self.out / "logs"
        self.bin = Path(sys.executable).parent
        self.results: list[StageResult] = []
        self.labels: Path = EXAMPLES / "labels.jsonl"

    # ---- plumbing -----------------------------------------------------------------------
    def srft(self, stage: str, *args: str, torchrun: int = 0, log: str | None = None) -> str:
        """Run `srft STAGE ARGS` (under torchrun with `torchrun` processes); return its output.

        Output goes to logs/<log>.log; a failure prints the log's tail and stops the demo."""
        cmd = [str(self.bin / "srft"), stage, *args]
        if torchrun:
            cmd = [str(self.bin / "torchrun"), "--standalone", f"--nproc-per-node={torchrun}", *cmd]
        return self.run(cmd, log or stage)

    def run(self, cmd: list[str], log: str) -> str:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{log}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
        with open(log_path, "w", encoding="utf-8") as handle:
            handle.write("$ " + " ".join(cmd) + "\n")
            handle.flush()
            proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        text = log_path.read_text(encoding="utf-8", errors="replace")
        if proc.returncode != 0:
            tail = "\n".join(text.splitlines()[-25:])
            raise DemoError(f"`{' '.join(cmd[:3])} ...` exited with {proc.returncode}; log {log_path}:\n{tail}")
        return text

    def stage(self, name: str, fn) -> StageResult:
        number = STAGES.index(name) + 1
        print(f"\n[{number}/{len(STAGES)}] {name}", flush=True)
        result = StageResult(name)
        start = time.monotonic()
        fn(result)
        result.seconds = time.monotonic() - start
        for fact in result.facts:
            print(f"    {fact}")
        for what, path in result.outputs:
            print(f"    -> {what}: {_rel(path)}")
        print(f"    ({result.seconds:.1f} s)", flush=True)
        self.results.append(result)
        return result

    # ---- stages -------------------------------------------------------------------------
    def ingest(self, r: StageResult) -> None:
        out = self.out / "trajectories.jsonl"
        trajs = sorted(str(p) for p in (EXAMPLES / "trajectories").glob("*.traj"))
        self.srft("ingest", *trajs, "--resolved", str(EXAMPLES / "resolved.jsonl"), "-o", str(out), "--quiet")
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        if len(rows) != len(trajs):
            raise DemoError(f"ingest wrote {len(rows)} trajectories for {len(trajs)} files")
        resolved = sum(1 for row in rows if row["resolved"])
        steps = sum(1 for row in rows for m in row["messages"] if is_step(m))
        r.facts.append(f"{len(rows)} SWE-agent trajectories ({resolved} resolved, {len(rows) - resolved} not), "
                       f"{steps} assistant steps")
        r.outputs.append(("normalised trajectories", out))
        self.trajectories = out

    def label(self, r: StageResult) -> None:
        if not self.args.critic:
            rows = [json.loads(line) for line in self.labels.read_text().splitlines() if line.strip()]
            counts = _label_counts(rows)
            r.facts.append(f"expert labels (by hand, examples/labels.jsonl): {counts}")
            r.facts.append("use `make demo CRITIC=1` to label with a critic LLM on a local vLLM server instead")
            r.outputs.append(("step labels", self.labels))
            return
        labels = self.run_critic(r)
        r.outputs.insert(0, ("critic step labels", labels))
        self.labels = labels

    def run_critic(self, r: StageResult) -> Path:
        """`srft label` against a real vLLM CPU server (own venv, tiny random Qwen2 model), then
        `srft critic-eval` against the expert labels. Uses the package's vLLM server
        (evaluate/serve.py: venv build, loopback-only server, process-group shutdown)."""
        from srft_megatron.convert.tiny_hf import save_tiny_served_model
        from srft_megatron.evaluate.serve import VllmServer, local_cpu_configs

        r.facts.append("building the vLLM CPU venv if missing (scripts/vllm_venv.sh, minutes the first time)")
        model_dir = save_tiny_served_model(self.out / "critic-model")
        labels = self.out / "labels.critic.jsonl"
        config, = local_cpu_configs(model_dir, served_name="tiny", max_model_len=8192, run_dir=self.out / "vllm")
        with VllmServer(config) as url:
            r.facts.append(f"vLLM server {url} serving {_rel(model_dir)}")
            self.srft("label", "--trajectories", str(self.trajectories), "-o", str(labels), "--endpoint", url,
                      "--model", "tiny", "--tokenizer", str(model_dir), "--max-model-len", "8192", "--quiet")
        rows = [json.loads(line) for line in labels.read_text().splitlines() if line.strip()]
        r.facts.append(f"critic labels (a tiny random model: meaningless labels, but the real path): {_label_counts(rows)}")
        metrics = self.out / "critic-eval.json"
        text = self.srft("critic-eval", "--labels", str(labels), "--reference", str(EXAMPLES / "labels.jsonl"),
                         "--json", str(metrics))
        r.facts.append("agreement with the expert labels (srft critic-eval):")
        r.facts.extend("  " + line.rstrip() for line in text.splitlines()[1:] if line.strip())
        r.outputs.append(("critic-eval metrics", metrics))
        return labels

    def view(self, r: StageResult) -> None:
        out = self.out / "trajectories.html"
        text = self.srft("view", str(self.trajectories), str(self.labels), "-o", str(out),
                         "--policy", self.args.policy, "--quiet")
        r.facts.append(_last_line(text, "wrote"))
        r.outputs.append(("HTML view of every step, its label and its trained/masked tokens", out))

    def preprocess(self, r: StageResult) -> None:
        prefix = self.out / "data" / self.args.policy
        self.srft("preprocess", "--trajectories", str(self.trajectories), "--labels", str(self.labels),
                  "--policy", self.args.policy, "--tokenizer", "qwen2.5", "--seq-length", str(self.args.seq_length),
                  "--output-prefix", str(prefix), "--quiet")
        meta_path = prefix.parent / f"{prefix.name}.meta.json"
        for suffix in ("_tokens.bin", "_tokens.idx", "_weights.bin", "_weights.idx"):
            if not (prefix.parent / f"{prefix.name}{suffix}").is_file():
                raise DemoError(f"preprocess did not write {prefix}{suffix}")
        counts = json.loads(meta_path.read_text())["counts"]
        kept, rejected = sum(counts["kept_steps"].values()), sum(counts["rejected_steps"].values())
        r.facts.append(f"Qwen2.5 tokenizer, policy {self.args.policy}: {counts['documents']} documents, "
                       f"{counts['tokens']} tokens, {counts['weighted_tokens']:.0f} with loss weight; "
                       f"steps kept {kept}, rejected {rejected}; steps cut at "
                       f"--seq-length {self.args.seq_length}: {counts['steps_cut']}")
        r.outputs.append(("Megatron indexed datasets (tokens + loss weights)", prefix.parent / f"{prefix.name}_*"))
        r.outputs.append(("metadata", meta_path))
        self.prefix = prefix

    def train(self, r: StageResult) -> None:
        run_dir = self.out / "run"
        tp = self.args.tensor_parallel
        overrides = ["model.name=tiny-qwen-vocab", f"model.seq_length={self.args.seq_length}",
                     f"parallel.tensor={tp}", f"train.steps={self.args.steps}", "train.global_batch_size=2",
                     "train.micro_batch_size=1", f"data.prefixes=[{self.prefix}]",
                     # per-label validation NLL before the first step and at the end, on the training
                     # documents themselves: 8 examples are too few to hold some out
                     f"data.validation_prefixes=[{self.prefix}]", f"train.eval_interval={self.args.steps}",
                     "train.eval_samples=8"]
        self.srft("train", "--config", self.args.config, "--run-dir", str(run_dir), *overrides, torchrun=tp)
        from srft_megatron.training.checkpoint import latest_checkpoint

        self.checkpoint = latest_checkpoint(run_dir / "checkpoints")
        if self.checkpoint is None:
            raise DemoError(f"training wrote no checkpoint ({run_dir / 'checkpoints' / 'latest'} missing)")
        from srft_megatron.training.metrics import is_eval_record

        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        metrics = [m for m in records if not is_eval_record(m)]
        evals = [m for m in records if is_eval_record(m)]
        if len(metrics) != self.args.steps:
            raise DemoError(f"metrics.jsonl has {len(metrics)} steps, expected {self.args.steps}")
        self.metrics = metrics
        first, last = metrics[:5], metrics[-5:]
        def mean(rows, key):  # steps skipped or empty log no loss
            values = [m[key] for m in rows if m.get(key) is not None]
            return sum(values) / len(values) if values else float("nan")
        r.facts.append(f"tiny Qwen2-shaped model (2 layers, hidden 64, Qwen2.5 vocabulary), {len(metrics)} steps, "
                       f"TP={tp} over {tp} processes (torchrun, gloo)")
        r.facts.append(f"loss (weighted tokens only) {mean(first, 'loss'):.3f} over the first {len(first)} steps -> "
                       f"{mean(last, 'loss'):.3f} over the last {len(last)}; "
                       f"{mean(metrics, 'weighted_fraction'):.1%} of the tokens carry weight; "
                       f"{mean(metrics, 'step_time_s'):.1f} s/step")
        if len(evals) < 2:
            raise DemoError(f"metrics.jsonl has {len(evals)} validation records, expected one before and one after training")
        r.facts.extend(validation_table(evals[0], evals[-1], "the 8 training trajectories themselves (too few to hold "
                                        "some out)"))
        page = self.out / "run.html"  # the per-label NLL per step, plotted (srft view --run)
        self.srft("view", "--run", str(run_dir), "-o", str(page), log="view-run")
        r.outputs.append(("Megatron distributed checkpoint", self.checkpoint))
        r.outputs.append(("per-step metrics", run_dir / "metrics.jsonl"))
        r.outputs.append(("run page: per-label validation NLL and loss per step (srft view --run)", page))
        r.outputs.append(("run directory (config, logs, tensorboard)", run_dir))

    def convert(self, r: StageResult) -> None:
        hf = self.out / "hf"
        self.srft("convert", "to-hf", "--checkpoint", str(self.checkpoint), "--output", str(hf), "--overwrite", "--quiet")
        shards = sorted(hf.glob("*.safetensors"))
        if not (hf / "config.json").is_file() or not shards:
            raise DemoError(f"convert wrote no config.json / safetensors in {hf}")
        r.facts.append(f"Qwen2ForCausalLM, {len(shards)} safetensors shard(s), tokenizer files included")
        r.outputs.append(("Hugging Face model directory", hf))
        self.hf = hf

    def generate(self, r: StageResult) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tok = AutoTokenizer.from_pretrained(self.hf)
        model = AutoModelForCausalLM.from_pretrained(self.hf, dtype=torch.float32)
        first = json.loads(self.trajectories.read_text().splitlines()[0])
        prompt = [m for m in first["messages"][:2] if m["role"] in ("system", "user")]
        ids = tok.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=self.args.new_tokens, do_sample=False)
        new = out[0, ids["input_ids"].shape[1]:]
        if len(new) == 0:
            raise DemoError("the converted model generated no tokens")
        text = tok.decode(new, skip_special_tokens=False)
        params = sum(p.numel() for p in model.parameters())
        r.facts.append(f"transformers {type(model).__name__} ({params / 1e6:.1f} M parameters) loaded from {_rel(self.hf)}")
        r.facts.append(f"prompt: the issue of {first['id']} ({ids['input_ids'].shape[1]} tokens)")
        r.facts.append(f"greedy continuation ({len(new)} tokens; a 2-layer model trained for seconds): {text!r}")

    def report(self, r: StageResult) -> None:
        text = self.srft("report", str(self.prefix))
        for line in text.splitlines()[1:]:
            if line.strip():
                r.facts.append(line.rstrip())
        r.outputs.append(("full report log", self.logs / "report.log"))

    # ---- driver -------------------------------------------------------------------------
    def run_all(self) -> None:
        if self.out.exists() and any(self.out.iterdir()):
            if not (self.out / MARKER).is_file():
                raise ConfigError(f"{self.out} exists and is not a previous demo output (no {MARKER}); "
                                  "choose another --output")
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / MARKER).write_text("written by srft demo; the next run empties this directory\n")
        print(f"SRFT demo: examples/ ({len(list((EXAMPLES / 'trajectories').glob('*.traj')))} trajectories) -> "
              f"{_rel(self.out)}; logs of every stage in {_rel(self.logs)}")
        for name in STAGES:
            self.stage(name, getattr(self, name))


def _label_counts(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        for step in row["steps"]:
            counts[step["label"]] = counts.get(step["label"], 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _last_line(text: str, prefix: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]
    return lines[-1] if lines else text.strip().splitlines()[-1]


def validation_table(first: dict, last: dict, what: str) -> list[str]:
    """Lines of the per-label validation NLL table (label, first eval, last eval) of two
    metrics.jsonl validation records (training/evaluation.py)."""
    from srft_megatron.view.run import OUTCOMES, VAL_LABELS  # the labels and outcomes the run page draws

    keys = ["val/loss"] + [f"val/nll/{n}" for n in (*VAL_LABELS, *OUTCOMES)]
    lines = [f"per-label validation NLL on {what}, step {first['step']} -> step {last['step']}:",
             f"  {'label':<12} {'step ' + str(first['step']):>10} {'step ' + str(last['step']):>10}"]
    for key in keys:
        if key in first:
            after = "-" if last.get(key) is None else f"{last[key]:.3f}"
            label = "loss (w)" if key == "val/loss" else key.split("/")[-1]
            lines.append(f"  {label:<12} {first[key]:>10.3f} {after:>10}")
    return lines


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cluster_equivalent() -> str:
    """The demo's stages at full size: same commands, bigger data, SLURM for the GPU work."""
    from srft_megatron.launch.pipeline import shipped_pipelines

    names = shipped_pipelines()  # by name: the shipped specs are package data
    spec_text = "qwen2.5-32b" if "qwen2.5-32b" in names else (names[0] if names else "PIPELINE.yaml")
    return "\n".join([
        "The same pipeline on a cluster:",
        "  srft ingest runs/*.traj --resolved harness-report.json -o data/trajectories.jsonl",
        "  srft label --trajectories data/trajectories.jsonl -o data/labels.jsonl "
        "--endpoint http://node1:8000 --endpoint http://node2:8000 --model critic   # vLLM replicas",
        "  srft view data/trajectories.jsonl data/labels.jsonl -o data/trajectories.html",
        "  srft preprocess --trajectories data/trajectories.jsonl --labels data/labels.jsonl --policy srft "
        "--tokenizer qwen2.5 --seq-length 32768 --output-prefix data/srft --workers 32",
        "  srft report data/srft",
        f"  srft launch {spec_text} --run-dir runs/qwen32b   "
        "# sbatch + nemo-run: preprocess -> train (torchrun, TP/PP/DP) -> convert -> evaluate",
        "  # or one stage by hand: SRFT_RUN_DIR=runs/qwen32b SRFT_TRAIN_CONFIG=CONFIG.yaml "
        "sbatch -N 4 --gpus-per-node=8 slurm/train.sbatch",
    ])


def main(args: argparse.Namespace) -> int:
    if args.tensor_parallel < 1 or args.steps < 1:
        raise ConfigError("--tensor-parallel and --steps must be at least 1")
    demo = Demo(args)
    started = time.monotonic()
    try:
        demo.run_all()
    except DemoError as err:
        print(f"\nsrft demo: stage failed: {err}", file=sys.stderr)
        return 1
    total = time.monotonic() - started
    print("\nSummary")
    for res in demo.results:
        where = ", ".join(_rel(p) for _, p in res.outputs[:1]) or "-"
        print(f"  {res.name:<11} {res.seconds:7.1f} s   {where}")
    print(f"  {'total':<11} {total:7.1f} s\n")
    print(f"Open {_rel(demo.out / 'trajectories.html')} in a browser to see which steps are trained and which masked, "
          f"and {_rel(demo.out / 'run.html')} for the per-label validation NLL per step.")
    print(cluster_equivalent())
    return 0
