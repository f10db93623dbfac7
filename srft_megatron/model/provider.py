"""Build a megatron-core `GPTModel` for a Qwen2.5 shape.

Qwen2 in megatron-core terms: RMSNorm, SwiGLU (`gated_linear_unit` + SiLU), no linear biases
except the QKV projection, grouped-query attention, RoPE with base 1e6, embeddings tied to the
output layer where Qwen ties them. The Transformer Engine layer spec is used when TE imports
(GPU machines); megatron-core's local spec otherwise (CPU tests). Both give the standard
GPTModel parameter names the HF converter maps (`decoder.layers.{i}.self_attention.linear_qkv`,
`...mlp.linear_fc1` with gate;up fused, ...); with TE the input norms are fused into the
following linear (`linear_qkv.layer_norm_weight`), and the local spec maps its norms to those
same names in sharded (checkpoint) state dicts, so checkpoints move freely between the two.

Precision: `bf16` (default; BF16 weights + FP32 main params in the optimizer), `fp32`, or
`fp8` (BF16 model with Transformer Engine FP8 GEMMs; `fp8_recipe` "delayed" or "tensorwise"
current scaling) — FP8 needs TE and a Hopper-class GPU. Delayed scaling takes its amax history
length, reduction and margin from the caller (`model.fp8_amax_history_len` 1024,
`fp8_amax_compute_algo` "max", `fp8_margin` 0: Transformer Engine's own `DelayedScaling`
defaults), never megatron-core's (history 1, "most_recent"), which nobody chose.

Kernel flags (`kernel_flags`): the local spec never uses megatron's fused masked softmax. Its
attention always gets an arbitrary boolean mask (block-diagonal for packed documents), but the
spec's `causal` mask type makes `FusedScaleMaskSoftmax` pick the upper-triangular kernel, which
ignores that mask (packed documents would attend to each other), and the megatron-core wheel
ships no `scaled_*_softmax_cuda` extension at all (ModuleNotFoundError on any GPU without TE).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from srft_megatron.errors import ConfigError
from srft_megatron.model.configs import Qwen2Shape

PRECISIONS = ("bf16", "fp32", "fp8")
FP8_RECIPES = ("delayed", "tensorwise")
FP8_AMAX_ALGOS = ("max", "most_recent")


def check_fp8_scaling(history_len: int, compute_algo: str, margin: int, prefix: str = "") -> None:
    """The one rule for the delayed-scaling settings (`prefix`: "model." from the YAML config)."""
    if compute_algo not in FP8_AMAX_ALGOS:
        raise ConfigError(f"{prefix}fp8_amax_compute_algo must be one of {FP8_AMAX_ALGOS}, got {compute_algo!r}")
    if history_len < 1:
        raise ConfigError(f"{prefix}fp8_amax_history_len must be >= 1, got {history_len}")
    if margin < 0:
        raise ConfigError(f"{prefix}fp8_margin must be >= 0, got {margin}")


@functools.cache
def te_available() -> bool:
    """True when Transformer Engine imports (it needs CUDA; it must never be installed on CPU)."""
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine.pytorch  # noqa: F401
    except Exception:
        return False
    return True


def transformer_config(shape: Qwen2Shape, *, precision: str = "bf16", tp: int = 1, pp: int = 1,
                       vpp: int | None = None, cp: int = 1, sequence_parallel: bool = False,
                       fp8_recipe: str = "delayed", recompute: str | None = None,
                       recompute_num_layers: int | None = None, use_te: bool | None = None,
                       per_token_loss: bool = True, fp8_amax_history_len: int = 1024,
                       fp8_amax_compute_algo: str = "max", fp8_margin: int = 0,
                       on_gpu: bool | None = None, **overrides: Any):
    """The megatron-core `TransformerConfig` for `shape` under a parallel layout and precision.

    `cp`: context-parallel size (Transformer Engine only; the trainer splits THD batches across
    the CP ranks, `training/context_parallel.py`). `recompute`: None, "selective" (core attention) or "full" (whole layers, uniform method,
    `recompute_num_layers` per chunk). `per_token_loss=True` makes the pipeline schedules
    normalise the loss by the token count summed over all micro-batches and DP ranks (the
    global weighted-NLL normalisation of SRFT; see `srft_megatron.training.loss`). `on_gpu`
    (default: CUDA is available) picks the kernel flags (`kernel_flags`), so tests can build the
    configuration a GPU gets."""
    from megatron.core.transformer import TransformerConfig

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if fp8_recipe not in FP8_RECIPES:
        raise ConfigError(f"fp8_recipe must be one of {FP8_RECIPES}, got {fp8_recipe!r}")
    use_te = te_available() if use_te is None else use_te
    if precision == "fp8" and not use_te:
        raise ConfigError("precision=fp8 needs Transformer Engine on a CUDA GPU")
    if sequence_parallel and not use_te:
        raise ConfigError("sequence parallelism is enabled only with the Transformer Engine spec")
    if cp > 1 and not use_te:
        raise ConfigError("context parallelism needs the Transformer Engine spec (THD attention across CP ranks)")
    check_fp8_scaling(fp8_amax_history_len, fp8_amax_compute_algo, fp8_margin)
    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    bf16 = precision in ("bf16", "fp8")
    dtype = torch.bfloat16 if bf16 else torch.float32
    kwargs: dict[str, Any] = dict(
        num_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        ffn_hidden_size=shape.ffn_hidden_size,
        num_attention_heads=shape.num_attention_heads,
        num_query_groups=shape.num_query_groups,
        kv_channels=shape.kv_channels,
        normalization="RMSNorm",
        layernorm_epsilon=shape.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=shape.init_method_std,
        bf16=bf16,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vpp if (vpp or 1) > 1 else None,
        context_parallel_size=cp,
        sequence_parallel=sequence_parallel,
        calculate_per_token_loss=per_token_loss,
        # Packed batches have a fixed [b, s] shape, so p2p shapes are static.
        variable_seq_lengths=False,
        **kernel_flags(on_gpu=on_gpu, use_te=use_te),
    )
    if precision == "fp8":
        kwargs.update(fp8="hybrid", fp8_recipe=fp8_recipe, fp8_param=False,
                      fp8_amax_history_len=fp8_amax_history_len,
                      fp8_amax_compute_algo=fp8_amax_compute_algo, fp8_margin=fp8_margin)
    if recompute == "selective":
        kwargs.update(recompute_granularity="selective")
    elif recompute == "full":
        kwargs.update(recompute_granularity="full", recompute_method="uniform",
                      recompute_num_layers=recompute_num_layers or 1)
    elif recompute is not None:
        raise ConfigError(f"recompute must be null, 'selective' or 'full', got {recompute!r}")
    kwargs.update(overrides)
    return TransformerConfig(**kwargs)


def kernel_flags(*, on_gpu: bool, use_te: bool) -> dict[str, Any]:
    """Fusion and device flags of `TransformerConfig` for a machine (see the module docstring)."""
    fused = on_gpu and use_te  # rope / bias fusions: TE or apex kernels, CUDA only
    return dict(
        # CPU: initialise on CPU so TP=n equals TP=1 exactly.
        use_cpu_initialization=not on_gpu,
        gradient_accumulation_fusion=False,
        apply_rope_fusion=fused,
        persist_layer_norm=False,
        bias_activation_fusion=fused,
        bias_dropout_fusion=fused,
        # Never: our masks are block-diagonal, the kernel would apply a plain causal one (or not
        # import at all). Only the local spec reads this flag; TE picks its own attention backend.
        masked_softmax_fusion=False,
        cross_entropy_loss_fusion=False,
        # Batched isend/irecv relies on NCCL group semantics. On gloo, with PP=2 both directions
        # go to the same peer in one group and same-shaped messages (activations vs. gradients
        # of interleaved chunks) can be matched in the wrong order; the unbatched path uses a
        # separate group per direction.
        batch_p2p_comm=on_gpu,
    )


def layer_spec(use_te: bool):
    """TE spec (fused norm+linear, FP8, THD packing) or megatron-core's local spec."""
    if use_te:
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        return get_gpt_layer_with_transformer_engine_spec()
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    return get_gpt_layer_local_spec(normalization="RMSNorm")


def set_yarn(config, scaling) -> None:
    """YaRN settings on a `TransformerConfig`, as megatron-core's GPTModel and attention read them.

    `TransformerConfig` declares no `yarn_*` fields (only the MLA config does): `GPTModel` and
    `Attention` read them with getattr/hasattr, so they are set as attributes. mscale and
    mscale_all_dim go through only when both are set, so megatron's attention factor is
    transformers' (0.1 ln(factor) + 1 otherwise). TE's fused RoPE refuses an mscale != 1, so
    YaRN models use the unfused rotary path."""
    both = bool(scaling.mscale and scaling.mscale_all_dim)
    config.yarn_rotary_scaling_factor = scaling.factor
    config.yarn_original_max_position_embeddings = scaling.original_max_position_embeddings
    config.yarn_beta_fast = scaling.beta_fast
    config.yarn_beta_slow = scaling.beta_slow
    config.yarn_mscale = scaling.mscale if both else None
    config.yarn_mscale_all_dim = scaling.mscale_all_dim if both else None
    config.yarn_correction_range_round_to_int = scaling.truncate
    config.apply_rope_fusion = False


def build_gpt_model(shape: Qwen2Shape, *, pre_process: bool = True, post_process: bool = True,
                    use_te: bool | None = None, precision: str = "bf16", config=None,
                    vp_stage: int | None = None, parallel_output: bool = True,
                    seq_length: int | None = None, **config_kwargs: Any):
    """A `GPTModel` for `shape` on the current device, with standard megatron parameter names.

    Call after `srft_megatron.parallel.dims.initialize` (megatron needs its process groups and
    RNG tracker). `config` may be passed to reuse a `TransformerConfig`; otherwise one is built
    from `precision` and `config_kwargs` (see `transformer_config`)."""
    from megatron.core.models.gpt import GPTModel

    use_te = te_available() if use_te is None else use_te
    if config is None:
        config = transformer_config(shape, precision=precision, use_te=use_te, **config_kwargs)
    if shape.rope_scaling is not None:
        set_yarn(config, shape.rope_scaling)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(use_te),
        vocab_size=shape.vocab_size,
        max_sequence_length=seq_length or shape.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=parallel_output,
        share_embeddings_and_output_weights=shape.tie_word_embeddings,
        position_embedding_type="yarn" if shape.rope_scaling is not None else "rope",
        rotary_base=int(shape.rotary_base),
        vp_stage=vp_stage,
    )
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    return model
