"""Benchmark of the critic client: its own overhead per request, and requests/s on vLLM replicas.

    .venv/bin/python bench/label.py                       # starts 2 local vLLM CPU replicas (tiny model)
    .venv/bin/python bench/label.py --endpoint http://h1:8000 --endpoint http://h2:8000 \\
        --model critic --tokenizer qwen2.5                # against servers already running

Why these numbers: labelling must keep the replicas busy, so the client's share of each request
(prompt building and token counting, validation, the fsynced write, HTTP through the pool) must
be small next to the server's time. The table gives:

- client-side costs per trajectory, measured directly on the shared example trajectories;
- the pool's round trip against a server that does no work (our stub), i.e. the HTTP + routing
  overhead per request, at concurrency 1 and at the chosen concurrency;
- requests/s and latency against the vLLM replicas with a fixed short prompt, and a whole
  `srft label` run (trajectories/s, tokens/s) over copies of the shared trajectories.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srft_megatron.cli import main as srft  # noqa: E402
from srft_megatron.critic.client import EndpointPool, PoolConfig  # noqa: E402
from srft_megatron.critic.labeller import LabelConfig, Labeller  # noqa: E402
from srft_megatron.critic.prompt import load_prompt  # noqa: E402
from srft_megatron.critic.schema import label_schema, parse_answer, response_format  # noqa: E402
from srft_megatron.critic.transcript import TokenCounter, build_prompt  # noqa: E402
from srft_megatron.critic.writer import ResumableJsonlWriter  # noqa: E402
from srft_megatron.trajectory import read_trajectories  # noqa: E402
from tests.critic.openai_stub import StubServer  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "trajectories"


def make_corpus(work: Path, copies: int) -> Path:
    single = work / "trajectories.jsonl"
    inputs = sorted(str(p) for p in SHARED.glob("*.traj")) + [str(SHARED / "swesmith_rows_sample.jsonl")]
    assert srft(["ingest", *inputs, "-o", str(single), "--quiet"]) == 0
    rows = [json.loads(x) for x in single.read_text().splitlines() if x.strip()]
    out = work / "corpus.jsonl"
    with open(out, "w") as handle:
        for c in range(copies):
            for row in rows:
                handle.write(json.dumps(dict(row, id=f"{row['id']}~c{c}")) + "\n")
    return out


def client_costs(corpus: Path, counter: TokenCounter, budget: int, work: Path) -> list[tuple[str, str]]:
    trajs = [t for _, t in read_trajectories(str(corpus))]
    template = load_prompt(None)
    t0 = time.perf_counter()
    prompts = [build_prompt(t, template, counter, budget) for t in trajs]
    build_ms = (time.perf_counter() - t0) * 1000 / len(trajs)
    answers = [(json.dumps({"ideal_path": "x", "steps": [{"step": k, "label": "good", "confidence": 0.5}
                                                         for k in range(1, t.num_steps + 1)]}), t.num_steps)
               for t in trajs]
    t0 = time.perf_counter()
    for text, k in answers:
        parse_answer(text, k, label_schema(k, 32))
    parse_ms = (time.perf_counter() - t0) * 1000 / len(answers)
    with ResumableJsonlWriter(work / "bench-writer.jsonl") as writer:
        t0 = time.perf_counter()
        for i, (text, _) in enumerate(answers):
            writer.write({"id": f"w{i}", "answer": text})
        write_ms = (time.perf_counter() - t0) * 1000 / len(answers)
    cut = sum(bool(p.truncation["cuts"]) for p in prompts)
    return [("prompt build + token budget (ms/trajectory)", f"{build_ms:.2f} ({cut}/{len(trajs)} shortened, "
             f"budget {budget})"), ("answer validation (ms/answer)", f"{parse_ms:.3f}"),
            ("fsynced append (ms/record)", f"{write_ms:.3f}")]


async def pool_rate(urls: list[str], model: str, n: int, concurrency: int, k: int = 4) -> dict[str, float]:
    """n requests of a short fixed prompt (answer schema for k steps) through the pool."""
    pool = EndpointPool(urls, PoolConfig(max_in_flight=max(1, concurrency // len(urls)), retries=2))
    await pool.discover(model, wait=30)
    payload = {"model": model, "messages": [{"role": "user", "content": "Label the steps of a short trajectory."}],
               "temperature": 0, "max_tokens": 64 + 40 * k + 32,
               "response_format": response_format(label_schema(k, 32))}
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            done = await pool.chat(payload)
            latencies.append(done.latency_s)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    await pool.close()
    return {"rps": n / wall, "p50_ms": statistics.median(latencies) * 1000, "wall_per_req_ms": wall * 1000 / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", action="append", help="existing server(s); default: start local vLLM replicas")
    parser.add_argument("--model", default="tiny", help="served model name (default tiny)")
    parser.add_argument("--tokenizer", help="critic tokenizer (default: the tiny model's)")
    parser.add_argument("--replicas", type=int, default=2, help="local replicas to start (default 2)")
    parser.add_argument("--requests", type=int, default=64, help="requests per rate measurement (default 64)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight in total (default 16)")
    parser.add_argument("--copies", type=int, default=4, help="copies of the 8 shared trajectories to label (default 4)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-label-"))
    servers = []
    if not args.endpoint:
        from srft_megatron.convert.tiny_hf import save_tiny_served_model
        from srft_megatron.evaluate.serve import local_cpu_configs, start_servers

        model_dir = save_tiny_served_model(work / "tiny")
        args.tokenizer = args.tokenizer or str(model_dir)
        print(f"starting {args.replicas} vLLM CPU replicas ...", file=sys.stderr)
        servers = start_servers(local_cpu_configs(model_dir, args.replicas, max_model_len=8192, run_dir=work))
        args.endpoint = [s.url for s in servers]
    try:
        counter = TokenCounter.load(args.tokenizer or "qwen2.5")
        corpus = make_corpus(work, args.copies)
        rows = client_costs(corpus, counter, 7000, work)
        with StubServer("valid", model=args.model) as stub:
            one = asyncio.run(pool_rate([stub.url], args.model, args.requests, 1))
            many = asyncio.run(pool_rate([stub.url], args.model, args.requests, args.concurrency))
        rows += [("pool round trip, no-work server, 1 in flight (ms/request)", f"{one['wall_per_req_ms']:.2f}"),
                 (f"pool, no-work server, {args.concurrency} in flight (requests/s)", f"{many['rps']:.0f}")]
        for conc in (1, args.concurrency):
            rate = asyncio.run(pool_rate(args.endpoint, args.model, args.requests, conc))
            rows.append((f"vLLM x{len(args.endpoint)}, short prompt, {conc} in flight",
                         f"{rate['rps']:.2f} requests/s, p50 latency {rate['p50_ms']:.0f} ms"))
        config = LabelConfig(model=args.model, endpoints=args.endpoint, template=load_prompt(None),
                             tokenizer=args.tokenizer or "qwen2.5", ideal_path_chars=32,
                             pool=PoolConfig(max_in_flight=max(1, args.concurrency // len(args.endpoint))))
        totals = asyncio.run(Labeller(config, counter).run(str(corpus), str(work / "labels.jsonl"),
                                                           str(work / "failures.jsonl"), progress=False))
        tok = totals.prompt_tokens + totals.completion_tokens
        rows.append((f"srft label, {totals.labelled + totals.failed} trajectories",
                     f"{totals.labelled / totals.elapsed_s:.2f} trajectories/s, {totals.requests / totals.elapsed_s:.2f} "
                     f"requests/s, {tok / totals.elapsed_s:.0f} tokens/s, failed {totals.failed}"))
    finally:
        for server in servers:
            server.stop()
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-|-{'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")


if __name__ == "__main__":
    main()
