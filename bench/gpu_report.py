"""The two Python halves of bench/gpu_check.sh: measure the GPU's bf16 matmul peak, and write
bench/RESULTS.md from what the check produced.

    python3 bench/gpu_report.py peak --out peak.json      # 8192^3 bf16 matmuls, cuda events
    python3 bench/gpu_report.py write --dir RESULTS_DIR --out bench/RESULTS.md

MFU is reported against the *measured* dense bf16 matmul rate of this GPU (what a perfect GEMM
reaches here, e.g. ~790 TFLOP/s on the lent H200), not a datasheet number, so it says how much
of the reachable rate the trainer gets. `write` reads RESULTS_DIR/peak.json, bench.json (rows of
bench/train.py --json), env.json, and junit-*.xml (one per pytest phase) plus phases.tsv
(name, status, seconds); whatever is missing is reported as missing, never invented.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TE_NOTE = ("Transformer Engine is not installed on the lent machine and cannot be carried there: "
           "its core wheel is ~277 MB (the carry limit is 64 MiB) and its PyTorch extension is "
           "sdist-only (needs a CUDA build). The TE tests (TE layer spec, THD packing, FP8) stay "
           "marked `gpu` and skip themselves; they need an NGC image or a machine with TE.")


def measure_peak(n: int = 8192, warmup: int = 3, iters: int = 10) -> dict:
    """Mean bf16 TFLOP/s of `iters` n x n x n matmuls on random data after `warmup` ones."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(warmup):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        a @ b
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / iters
    return {"tflops": 2 * n ** 3 / seconds / 1e12, "n": n, "iters": iters,
            "device": torch.cuda.get_device_name(), "torch": torch.__version__}


def _junit(path: Path) -> tuple[dict, list[str]]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    lines = []
    for suite in suites:
        for case in suite.iter("testcase"):
            name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                node = case.find("failure") if case.find("failure") is not None else case.find("error")
                counts["failed"] += 1
                msg = (node.get("message") or "").splitlines()[0][:160] if node.get("message") else ""
                lines.append(f"| {name} | FAILED | {msg} |")
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
                lines.append(f"| {name} | skipped | {(case.find('skipped').get('message') or '')[:160]} |")
            else:
                counts["passed"] += 1
                lines.append(f"| {name} | passed | {float(case.get('time', 0)):.1f} s |")
    return counts, lines


def _read_json(path: Path):
    """The JSON in `path`, or None when the phase that writes it did not finish."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_results(d: Path) -> str:
    out = ["# GPU check (bench/gpu_check.sh)", ""]
    env = _read_json(d / "env.json") or {}
    peak = _read_json(d / "peak.json")
    if env:
        out += ["Machine: " + ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    out += [f"Measured bf16 matmul peak: **{peak['tflops']:.0f} TFLOP/s** ({peak['n']}^3, mean of "
            f"{peak['iters']} after warm-up, {peak['device']})" if peak else
            "Measured bf16 matmul peak: not measured", ""]
    out += ["## Training throughput (bench/train.py, BF16, megatron-core local spec)", ""]
    rows = _read_json(d / "bench.json")
    if rows:
        cols = ["model", "precision", "seq", "tokens/step", "step_s", "tokens/s", "TFLOP/s/GPU", "MFU%"]
        out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) and v < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v))  # noqa: E731
        out += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
        out += ["", "TFLOP/s: Megatron-LM's `num_floating_point_operations` on real tokens, causal "
                "attention per document (srft_megatron/training/metrics.py); MFU against "
                + ("the measured peak above." if peak else "989 TFLOP/s (H100 SXM datasheet): the peak "
                   "was not measured.")]
    else:
        out += ["Not run or did not finish (see gpu_check.log)."]
    out += ["", "## Tests on the GPU (no Transformer Engine)", ""]
    phases = {}
    if (d / "phases.tsv").is_file():
        for line in (d / "phases.tsv").read_text().splitlines():
            name, status, seconds = line.split("\t")
            phases[name] = (status, seconds)
    out += ["| phase | status | seconds |", "|---|---|---|"]
    out += [f"| {name} | {status} | {seconds} |" for name, (status, seconds) in phases.items()]
    for junit in sorted(d.glob("junit-*.xml")):
        counts, lines = _junit(junit)
        out += ["", f"### {junit.stem[len('junit-'):]}: {counts['passed']} passed, {counts['failed']} "
                f"failed, {counts['skipped']} skipped", "", "| test | result | |", "|---|---|---|", *lines]
    out += ["", "## Not run here", "", TE_NOTE, "",
            "TP/PP/DP parity (tests/training/test_train.py, marker `distributed`) needs two ranks: "
            "on one GPU NCCL refuses two ranks on the same device, so it runs on CPU (gloo) only.", ""]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("peak", help="measure the bf16 matmul peak")
    pk.add_argument("--out", required=True)
    wr = sub.add_parser("write", help="write RESULTS.md")
    wr.add_argument("--dir", required=True, help="folder with peak.json, bench.json, junit-*.xml, phases.tsv")
    wr.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd == "peak":
        result = measure_peak()
        Path(args.out).write_text(json.dumps(result))
        print(f"bf16 matmul peak: {result['tflops']:.1f} TFLOP/s on {result['device']}")
        return 0
    text = write_results(Path(args.dir))
    tmp = Path(args.out + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)  # atomic: a killed check never leaves half a file
    return 0


if __name__ == "__main__":
    sys.exit(main())
