"""Size a training run before it queues: parameters, per-GPU memory and throughput per layout.

    srft plan --model qwen2.5-coder-32b-instruct --seq-length 32768 --nodes 4 --gpus-per-node 8 \\
        --gpu-memory-gb 80 --json plan.json

Why a planner: a 32B run waits hours in a SLURM queue and an out-of-memory layout fails in its
first step. Everything here is arithmetic on a `Qwen2Shape`; nothing is allocated.

Static memory (weights, gradients, optimizer state) is exact for the way our trainer builds
megatron-core (`srft_megatron/training/trainer.py`): parameters in the model precision, DDP
gradient buffers in fp32 (`grad_reduce_in_fp32=True`), Adam with fp32 main parameters for bf16
(4 + 4 + 4 bytes a parameter) and without a copy for fp32 (4 + 4); the plan assumes the
Transformer Engine layer spec of GPU runs (`use_te=False` models the CPU local spec, whose
RMSNorm weights stay fp32). With the distributed
optimizer megatron lays parameters and gradients out in padded contiguous buffers (each
parameter starts on a 64-element boundary, each bucket ends on a multiple of lcm(DP x CP, 128),
the tied embedding copy of a pipelined model in a bucket of its own): we pad with megatron's own
`pad_param_start` / `pad_bucket_end`, and the optimizer state per GPU is its shard of those
buffers (an upper bound: padding holds no state). `tests/training/test_plan.py` checks these
numbers against the bytes megatron-core allocates on CPU.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models" (sec. 4, eq. 2 and 5: tensor + sequence parallel, everything divided by TP),
adapted to Qwen2 and stated term by term in `layer_activation_bytes`: the dropout masks are gone
(Qwen trains with dropout 0), K and V are the grouped-query width, the MLP is SwiGLU of width F,
and the 5as/h attention-score term is dropped because Transformer Engine's fused attention never
stores the s x s scores (so "selective" recompute saves nothing more and is not listed). Context
parallelism divides the sequence by CP. The first pipeline stage holds min(PP, micro-batches)
micro-batches in flight under 1F1B (the paper's sec. 4.2.3); the last stage holds the fp32
logits (4sbv/t, the paper's output-layer term). Full recompute keeps each layer's input
(2sbh/t) plus one layer's working set.

Throughput: model FLOPs per token as the trainer counts them (`training.metrics.step_flops`,
Megatron-LM's `num_floating_point_operations`: causal attention; s an upper bound for packed
documents), times 4/3 with full recompute (one more forward), at a stated fraction `mfu` of the GPUs' peak, times the 1F1B pipeline efficiency
m / (m + PP - 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from srft_megatron.errors import ConfigError
from srft_megatron.model.configs import Qwen2Shape

GIB = 2 ** 30
RECOMPUTE_OPTIONS = ("none", "full")


# ---- per-rank parameters and static memory -----------------------------------------------------
def stage_param_numels(shape: Qwen2Shape, *, tp: int = 1, pp: int = 1,
                       stage: int = 0) -> dict[str, list[int]]:
    """Element counts of the parameters one TP rank of pipeline `stage` holds, by kind.

    "norm": the RMSNorm weights (replicated across TP); "matrix": the rest; "shared": the tied
    word embedding (or its copy on the last stage) when PP > 1, which megatron flags
    `shared_embedding` and gives a buffer bucket of its own."""
    h, f, d = shape.hidden_size, shape.ffn_hidden_size, shape.kv_channels
    q, kv = shape.num_attention_heads * d, 2 * shape.num_query_groups * d
    layers = shape.num_layers // pp
    groups: dict[str, list[int]] = {
        "norm": [h, h] * layers,
        "matrix": [(q + kv) * h // tp, (q + kv) // tp, h * q // tp,   # QKV weight + bias, proj
                   2 * f * h // tp, h * f // tp] * layers,             # fc1 (gate;up), fc2
        "shared": [],
    }
    embedding = shape.vocab_size * h // tp
    tied_copy = shape.tie_word_embeddings and pp > 1
    if stage == 0:
        groups["shared" if tied_copy else "matrix"].append(embedding)
    if stage == pp - 1:
        groups["norm"].append(h)  # final norm
        if not shape.tie_word_embeddings:
            groups["matrix"].append(embedding)
        elif pp > 1:
            groups["shared"].append(embedding)
    return groups


def buffer_numel(plain: list[int], shared: list[int], *, distributed_optimizer: bool, dp: int) -> int:
    """Elements of one megatron DDP parameter/gradient buffer (one dtype, one model chunk)."""
    if not distributed_optimizer:
        return sum(plain) + sum(shared)
    from megatron.core.optimizer.param_layout import pad_bucket_end, pad_param_start

    def bucket(numels: list[int]) -> int:
        end = 0
        for n in numels:
            end = pad_param_start(end) + n
        return pad_bucket_end(end, dp, False) if numels else 0

    return bucket(plain) + sum(bucket([n]) for n in shared)


@dataclass(frozen=True)
class StaticMemory:
    """Bytes one GPU holds for parameters, gradients and optimizer state."""

    parameters: int   # parameter elements on this rank (unpadded)
    weights: int
    gradients: int
    optimizer: int


def static_memory(shape: Qwen2Shape, *, tp: int = 1, pp: int = 1, dp: int = 1, cp: int = 1, stage: int = 0,
                  precision: str = "bf16", distributed_optimizer: bool = True,
                  use_te: bool = True) -> StaticMemory:
    """Weights, fp32 gradient buffers and Adam state of one rank of pipeline `stage`.

    CP ranks hold full replicas like DP ranks; the distributed optimizer shards over DP x CP.
    megatron-core's local spec (`use_te=False`, CPU) builds its RMSNorms as torch modules that
    keep fp32 weights under bf16: a second, fp32 buffer (measured); TE's norms are bf16."""
    groups = stage_param_numels(shape, tp=tp, pp=pp, stage=stage)
    low = precision != "fp32"
    by_dtype: dict[int, tuple[list[int], list[int]]] = {}  # parameter bytes -> (plain, shared)
    norm_bytes = 4 if (not low or not use_te) else 2
    main_bytes = 2 if low else 4
    by_dtype.setdefault(norm_bytes, ([], []))[0].extend(groups["norm"])
    by_dtype.setdefault(main_bytes, ([], []))[0].extend(groups["matrix"])
    by_dtype[main_bytes][1].extend(groups["shared"])
    shards = dp * cp
    weights = gradients = optimizer = 0
    for param_bytes, (plain, shared) in by_dtype.items():
        buffer = buffer_numel(plain, shared, distributed_optimizer=distributed_optimizer, dp=shards)
        state_bytes = 12 if param_bytes == 2 else 8  # Adam m, v (+ fp32 main params for bf16)
        weights += buffer * param_bytes
        gradients += buffer * 4
        optimizer += (buffer // shards if distributed_optimizer else sum(plain) + sum(shared)) * state_bytes
    return StaticMemory(parameters=sum(map(sum, groups.values())), weights=weights, gradients=gradients,
                        optimizer=optimizer)


# ---- activations (Korthikanti et al. 2022, adapted; see the module docstring) ------------------
def layer_activation_bytes(shape: Qwen2Shape, *, seq: int, tp: int = 1, micro_batch: int = 1) -> float:
    """Bytes one transformer layer stores for backward, per micro-batch, bf16, TP + SP.

    Paper (eq. 1, per layer): 34sbh + 5as^2b. Ours, term by term (2 bytes an element):
    attention: QKV input 2sbh, Q 2sbh, K and V 4sb(g d), projection input 2sbh (paper: 11sbh
    with dropout mask sbh, K,V of width h); MLP: fc1 input 2sbh, gate;up output 4sbf, SwiGLU
    output 2sbf (paper: 19sbh for a 4h GeLU MLP with its mask); the two norm inputs 4sbh; no
    attention scores (fused attention). Everything divided by TP (sequence parallelism)."""
    s, b, h, f = seq, micro_batch, shape.hidden_size, shape.ffn_hidden_size
    gd = shape.num_query_groups * shape.kv_channels
    attention = 6 * s * b * h + 4 * s * b * gd
    mlp = 2 * s * b * h + 6 * s * b * f
    norms = 4 * s * b * h
    return (attention + mlp + norms) / tp


def activation_bytes(shape: Qwen2Shape, *, seq_length: int, tp: int = 1, pp: int = 1, cp: int = 1,
                     recompute: str = "none", microbatches: int = 1, micro_batch: int = 1) -> float:
    """Peak activation bytes on the busiest pipeline stage (first: in-flight micro-batches;
    last: fp32 logits)."""
    if recompute not in RECOMPUTE_OPTIONS:
        raise ConfigError(f"recompute must be one of {RECOMPUTE_OPTIONS}, got {recompute!r}")
    s = math.ceil(seq_length / cp)
    b, h = micro_batch, shape.hidden_size
    layers = shape.num_layers // pp
    per_layer = layer_activation_bytes(shape, seq=s, tp=tp, micro_batch=b)
    if recompute == "full":
        stored, working = 2 * s * b * h / tp, per_layer  # layer inputs + one layer recomputed
    else:
        stored, working = per_layer, 0.0
    in_flight = min(pp, microbatches)
    first = in_flight * layers * stored + working
    logits = 4 * s * b * shape.vocab_size / tp  # paper's 4sbv/t output-layer + loss term
    last = layers * stored + working + logits
    return max(first, last) if pp > 1 else first + logits


# ---- throughput -------------------------------------------------------------------------------
def flops_per_token(shape: Qwen2Shape, seq_length: int) -> float:
    """Model training FLOPs per token of one `seq_length` document, counted as the trainer's
    TFLOP/s and MFU count them (one owner: `srft_megatron.training.metrics.step_flops`)."""
    from srft_megatron.training.metrics import step_flops

    return step_flops(shape, seq_length, seq_length * seq_length) / seq_length


# ---- layouts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    cp: int
    dp: int
    sequence_parallel: bool
    distributed_optimizer: bool
    recompute: str
    memory_gb: dict[str, float]
    fits: bool
    tokens_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_layout(shape: Qwen2Shape, *, seq_length: int, tp: int, pp: int, cp: int, dp: int,
                    distributed_optimizer: bool, recompute: str, gpu_memory_gb: float,
                    global_batch_size: int, precision: str = "bf16", peak_tflops: float = 989.0,
                    mfu: float = 0.35, headroom: float = 0.10) -> Layout:
    """Memory (GiB, worst pipeline stage) and throughput of one layout."""
    microbatches = max(1, global_batch_size // dp)
    statics = [static_memory(shape, tp=tp, pp=pp, dp=dp, cp=cp, stage=st, precision=precision,
                             distributed_optimizer=distributed_optimizer) for st in {0, pp - 1}]
    worst = max(statics, key=lambda m: m.weights + m.gradients + m.optimizer)
    act = activation_bytes(shape, seq_length=seq_length, tp=tp, pp=pp, cp=cp, recompute=recompute,
                           microbatches=microbatches)
    mem = {"weights": worst.weights / GIB, "gradients": worst.gradients / GIB,
           "optimizer": worst.optimizer / GIB, "activations": act / GIB}
    mem["total"] = sum(mem.values())
    mem = {k: round(v, 2) for k, v in mem.items()}
    world = tp * pp * cp * dp
    hardware = flops_per_token(shape, seq_length) * (4 / 3 if recompute == "full" else 1)
    bubble = microbatches / (microbatches + pp - 1)
    tokens = world * peak_tflops * 1e12 * mfu / hardware * bubble
    return Layout(tp=tp, pp=pp, cp=cp, dp=dp, sequence_parallel=tp > 1,
                  distributed_optimizer=distributed_optimizer, recompute=recompute, memory_gb=mem,
                  fits=mem["total"] <= gpu_memory_gb * (1 - headroom), tokens_per_s=round(tokens, 1))


def _powers_of_two(limit: int) -> list[int]:
    return [2 ** i for i in range(limit.bit_length()) if 2 ** i <= limit]


def plan(shape: Qwen2Shape, *, seq_length: int, nodes: int, gpus_per_node: int, gpu_memory_gb: float,
         global_batch_size: int = 32, precision: str = "bf16", peak_tflops: float = 989.0,
         mfu: float = 0.35, headroom: float = 0.10) -> dict:
    """Every valid TP/PP/CP/DP layout of `nodes` x `gpus_per_node` GPUs, best first.

    TP stays inside a node and divides the heads, KV groups and vocabulary; PP divides the
    layers; CP is a power of two; DP divides the global batch (micro-batch 1: THD packing)."""
    if seq_length < 1 or nodes < 1 or gpus_per_node < 1 or gpu_memory_gb <= 0:
        raise ConfigError("seq-length, nodes, gpus-per-node and gpu-memory-gb must be positive")
    if shape.max_position_embeddings < seq_length:
        raise ConfigError(f"seq_length={seq_length} exceeds max_position_embeddings="
                          f"{shape.max_position_embeddings} of this model (use a YaRN variant)")
    world = nodes * gpus_per_node
    layouts: list[Layout] = []
    for tp in _powers_of_two(gpus_per_node):
        if shape.num_attention_heads % tp or shape.num_query_groups % tp or shape.vocab_size % tp:
            continue
        for pp in (p for p in range(1, shape.num_layers + 1) if shape.num_layers % p == 0):
            for cp in _powers_of_two(world // (tp * pp) if world >= tp * pp else 0):
                if world % (tp * pp * cp):
                    continue
                # CP pads documents to multiples of 2 x CP; SP splits each rank's share across TP
                if (cp > 1 and seq_length % (2 * cp)) or (seq_length // cp) % tp:
                    continue
                dp = world // (tp * pp * cp)
                if global_batch_size % dp:
                    continue
                for distopt in (True, False):
                    for recompute in RECOMPUTE_OPTIONS:
                        layouts.append(evaluate_layout(
                            shape, seq_length=seq_length, tp=tp, pp=pp, cp=cp, dp=dp,
                            distributed_optimizer=distopt, recompute=recompute,
                            gpu_memory_gb=gpu_memory_gb, global_batch_size=global_batch_size,
                            precision=precision, peak_tflops=peak_tflops, mfu=mfu, headroom=headroom))
    layouts.sort(key=lambda l: (not l.fits, -l.tokens_per_s, l.memory_gb["total"]))
    return {"parameters": shape.num_parameters(), "seq_length": seq_length, "nodes": nodes,
            "gpus_per_node": gpus_per_node, "gpu_memory_gb": gpu_memory_gb,
            "global_batch_size": global_batch_size, "precision": precision, "peak_tflops": peak_tflops,
            "mfu": mfu, "headroom": headroom, "layouts": [l.to_dict() for l in layouts]}


def format_plan(result: dict, top: int = 10) -> str:
    """A terminal table of the best `top` layouts."""
    lines = [f"parameters: {result['parameters']:,}  seq_length: {result['seq_length']}  "
             f"GPUs: {result['nodes']}x{result['gpus_per_node']} x {result['gpu_memory_gb']} GiB  "
             f"global batch: {result['global_batch_size']}  (MFU {result['mfu']}, peak "
             f"{result['peak_tflops']} TFLOP/s, {int(result['headroom'] * 100)}% memory kept free)",
             f"{'tp':>3} {'pp':>3} {'cp':>3} {'dp':>3} {'distopt':>7} {'recompute':>9} {'weights':>8} "
             f"{'grads':>7} {'optim':>7} {'activ':>7} {'total':>7} {'fits':>5} {'tokens/s':>10}"]
    for row in result["layouts"][:top]:
        m = row["memory_gb"]
        lines.append(f"{row['tp']:>3} {row['pp']:>3} {row['cp']:>3} {row['dp']:>3} "
                     f"{'yes' if row['distributed_optimizer'] else 'no':>7} {row['recompute']:>9} "
                     f"{m['weights']:>8.1f} {m['gradients']:>7.1f} {m['optimizer']:>7.1f} "
                     f"{m['activations']:>7.1f} {m['total']:>7.1f} {'yes' if row['fits'] else 'NO':>5} "
                     f"{row['tokens_per_s']:>10,.0f}")
    fitting = sum(r["fits"] for r in result["layouts"])
    lines.append(f"{fitting} of {len(result['layouts'])} layouts fit (memory in GiB per GPU, worst "
                 f"pipeline stage)")
    return "\n".join(lines)


def check_fits(shape: Qwen2Shape, *, seq_length: int, tp: int, pp: int, cp: int, dp: int,
               distributed_optimizer: bool, recompute: str | None, gpu_memory_gb: float,
               global_batch_size: int, precision: str = "bf16") -> Layout:
    """The fit check for a training stage before it is submitted (`srft launch`,
    `srft_megatron/launch/fit.py`): the layout, or a ConfigError if it cannot fit."""
    layout = evaluate_layout(shape, seq_length=seq_length, tp=tp, pp=pp, cp=cp, dp=dp,
                             distributed_optimizer=distributed_optimizer,
                             recompute="full" if recompute == "full" else "none",
                             gpu_memory_gb=gpu_memory_gb, global_batch_size=global_batch_size,
                             precision=precision)
    if not layout.fits:
        raise ConfigError(f"layout tp={tp} pp={pp} cp={cp} dp={dp} needs {layout.memory_gb['total']} GiB "
                          f"per GPU ({layout.memory_gb}), more than {gpu_memory_gb} GiB less headroom; "
                          f"run 'srft plan' for layouts that fit")
    return layout
