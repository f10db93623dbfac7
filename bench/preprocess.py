"""Cost of step-span derivation: `srft preprocess` tokens/s per worker vs a plain tokeniser pass.

    .venv/bin/python bench/preprocess.py [--repeat 5] [--workers 1] [--shared ../shared]

Ingests the shared example trajectories (repeated --repeat times under new ids), runs the real
preprocess stage, and times a plain `tokenizer(text)` over the same full renders. Prints one
table; the ratio target is >= 0.5 (span derivation may at most halve tokenisation throughput).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--render", default="tools")
    args = parser.parse_args()

    from srft_megatron import load_tokenizer
    from srft_megatron.ingest import read_any
    from srft_megatron.policy import PRESETS
    from srft_megatron.preprocess import PreprocessJob, run_preprocess
    from srft_megatron.render import StepRenderer, template_messages

    src = Path(args.shared) / "data" / "trajectories"
    trajs = [item.result for p in sorted(src.glob("*.traj")) for item in read_any(p)]
    tokenizer = load_tokenizer("qwen2.5")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        with open(path, "w") as handle:
            for r in range(args.repeat):
                for t in trajs:
                    handle.write(json.dumps(dict(t.to_json(), id=f"{t.id}-{r}")) + "\n")
        job = PreprocessJob(trajectories=str(path), output_prefix=str(Path(tmp) / "ds"), seq_length=1 << 20,
                            policy=PRESETS["naive"], render=args.render, workers=args.workers, progress=False)
        meta = run_preprocess(job)
        timing = meta["timing"]
        renderer = StepRenderer(tokenizer, args.render)
        texts = [renderer._render(template_messages(t, args.render))
                 for t in trajs] * args.repeat
        start = time.perf_counter()
        plain_tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)
        plain_s = time.perf_counter() - start

    pre_rate = timing["rendered_tokens"] / timing["worker_seconds"]
    plain_rate = plain_tokens / plain_s
    rows = [
        ("srft preprocess (render prefixes + spans + weights), per worker", timing["rendered_tokens"],
         timing["worker_seconds"], pre_rate),
        ("plain tokenizer(text) on the same renders", plain_tokens, plain_s, plain_rate),
    ]
    print(f"{'pass':<66} {'tokens':>10} {'seconds':>9} {'tokens/s':>11}")
    for name, tokens, secs, rate in rows:
        print(f"{name:<66} {tokens:>10} {secs:>9.2f} {rate:>11.0f}")
    ratio = pre_rate / plain_rate
    print(f"ratio preprocess/plain = {ratio:.2f} (target >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'}); "
          f"{len(texts)} trajectories, workers={args.workers}, wall {timing['wall_seconds']:.1f}s")


if __name__ == "__main__":
    main()
