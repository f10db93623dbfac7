"""The SRFT trainer: megatron-core model, schedules and optimizer, our loss and data.

    torchrun --nproc-per-node 8 .venv/bin/srft train --config configs/qwen2.5-7b-srft.yaml \\
        --run-dir runs/7b-srft parallel.tensor=4

One `Trainer` owns: the model chunks (one per virtual pipeline stage) wrapped in megatron-core's
`DistributedDataParallel`; megatron-core's (distributed) Adam optimizer and its
`OptimizerParamScheduler` (warm-up + cosine); the packed weighted dataset; and the step:
`get_forward_backward_func()` (no pipelining, 1F1B, or interleaved 1F1B as the layout asks)
over this rank's micro-batches with the globally normalised weighted NLL
(`srft_megatron.training.loss`), then `optimizer.step()`. Checkpoints go to
`RUN_DIR/checkpoints` every `checkpoint.save_interval` steps and at exit / SIGTERM; a run
directory with a checkpoint resumes exactly (model, optimizer, scheduler, RNG, data position).

Nothing non-finite is ever learnt or saved:
- before the step, the global batch's weight sum and the documents' checks (finite,
  non-negative weights; token ids in the vocabulary) are all-reduced with the token counts: a
  batch holding a bad document is not run at all (`skipped`, the document named), and one with
  no weighted token is not applied (`empty`: a zero-gradient Adam update would still move the
  weights by their momentum);
- after forward/backward a non-finite loss is not applied; non-finite gradients are caught by
  megatron-core's found-inf check (the optimizer is built with a constant loss scale of 1.0,
  exact, so `optimizer.step()` unscales, all-reduces found-inf over the model-parallel ranks
  and returns `update_ok=False` without touching the weights); megatron-core's plain fp32
  optimizer has no such check, so for it the gradients are checked before its step;
- a step that is not applied leaves the scheduler where it was (as Megatron-LM does) and moves
  the data on; `train.max_skipped_steps` skipped steps in a row stop the run (exit 1), as do
  `train.max_empty_steps` empty steps before any step trained;
- `save()` refuses parameters that are not all finite, so `latest` never names such a checkpoint.
Every step's record says `skipped`/`empty` (with `skip_reason`); the counts are in
`RUN_DIR/train_summary.json` and the last log line.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from srft_megatron.training.config import SrftTrainConfig
from srft_megatron.training.preflight import validate


class Trainer:
    def __init__(self, cfg: SrftTrainConfig, run_dir: str | Path, validated=None):
        """`validated`: the `(shape, dims)` of `validate(cfg, world)` when the caller ran it
        (`srft train` does, before any process group); otherwise it is run here."""
        from megatron.core import parallel_state as ps

        from srft_megatron.parallel.dims import initialize, world_from_env

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        # Everything checkable is checked once, before any process group starts.
        self.shape, self.dims = validated if validated is not None else validate(cfg, world_from_env()[1])
        initialize(self.dims, seed=cfg.train.seed)
        self.rank = dist.get_rank()
        self.is_logger = self.rank == 0
        self.dp_rank, self.dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
        self.use_te = cfg.model.resolve_use_te()
        self._stop_requested = False
        self.step = 0
        self.consumed_samples = 0
        self.counts = {"applied": 0, "skipped": 0, "empty": 0}  # steps, over the whole run (resumed too)
        self.consecutive_skips = 0
        self._build_model()
        self._build_optimizer()
        self._build_data()
        self._restore()

    # ---- construction --------------------------------------------------------------------
    def _build_model(self) -> None:
        """The model chunks (one per virtual stage) from `ModelConfig.build`'s TransformerConfig,
        initial weights if asked, wrapped in megatron's DDP (`ParallelConfig.build_ddp_config`)."""
        from megatron.core import parallel_state as ps
        from megatron.core.distributed import DistributedDataParallel

        from srft_megatron.model.provider import build_gpt_model
        from srft_megatron.training.checkpoint import load_model_checkpoint
        from srft_megatron.training.loss import finalize_model_grads_without_token_scaling

        m, p = self.cfg.model, self.cfg.parallel
        self.tf_config = m.build(self.shape, p)
        vpp = p.virtual_pipeline if (p.virtual_pipeline or 1) > 1 else None
        chunks = []
        for vp in range(vpp or 1):
            vp_stage = vp if vpp else None
            chunks.append(build_gpt_model(
                self.shape, config=self.tf_config, use_te=self.use_te, vp_stage=vp_stage,
                pre_process=ps.is_pipeline_first_stage(ignore_virtual=vpp is None, vp_stage=vp_stage),
                post_process=ps.is_pipeline_last_stage(ignore_virtual=vpp is None, vp_stage=vp_stage),
                seq_length=m.seq_length))
        if self.cfg.train.init_from and not self._has_resume_checkpoint():
            from srft_megatron.training.integrity import describe

            marker = load_model_checkpoint(chunks, self.cfg.train.init_from)
            self._log_line(f"loaded initial weights from {self.cfg.train.init_from} "
                           f"({marker.get('kind')} checkpoint, step {marker.get('step')}; "
                           f"{describe(marker['verification'])})")
        ddp_config = p.build_ddp_config()
        self.model = [DistributedDataParallel(config=self.tf_config, ddp_config=ddp_config, module=c,
                                              disable_bucketing=i > 0)
                      for i, c in enumerate(chunks)]
        self.tf_config.finalize_model_grads_func = finalize_model_grads_without_token_scaling

    def _build_optimizer(self) -> None:
        """megatron-core's (distributed) Adam and LR schedule from `OptimizerConfig.build*`."""
        from megatron.core.optimizer import get_megatron_optimizer

        o = self.cfg.optimizer
        self.optimizer = get_megatron_optimizer(
            o.build(precision=self.cfg.model.precision, distributed_optimizer=self.cfg.parallel.distributed_optimizer),
            self.model)
        chained = getattr(self.optimizer, "chained_optimizers", [self.optimizer])
        self._has_found_inf = all(getattr(o, "grad_scaler", None) is not None for o in chained)
        self.tf_config.grad_scale_func = self.optimizer.scale_loss
        self.scheduler = o.build_scheduler(self.optimizer, self.cfg.train.steps)

    def _build_data(self) -> None:
        from srft_megatron.training.context_parallel import cp_multiple
        from srft_megatron.training.data import StepBatches, build_train_dataset

        d, t = self.cfg.data, self.cfg.train
        self.dataset = build_train_dataset(
            d.prefixes, d.weights, seq_length=self.cfg.model.seq_length,
            num_samples=t.steps * t.global_batch_size, seed=d.seed, pack=d.pack, cache_dir=d.cache_dir,
            vocab_size=self.shape.vocab_size, held_out_fraction=d.validation_fraction,
            length_multiple=cp_multiple(self.dims.cp))  # CP pads documents: pack with room for it
        self.batches = StepBatches(self.dataset, global_batch_size=t.global_batch_size,
                                   micro_batch_size=t.micro_batch_size, dp_rank=self.dp_rank,
                                   dp_size=self.dp_size)
        self.evaluator = self._build_evaluator()

    def _build_evaluator(self):
        """This rank's validation micro-batches (`training/evaluation.py`); None when
        train.eval_interval is 0."""
        from srft_megatron.training.context_parallel import cp_multiple
        from srft_megatron.training.evaluation import Evaluator, validation_samples, validation_sources

        d, t = self.cfg.data, self.cfg.train
        if not t.eval_interval:
            return None
        samples = validation_samples(validation_sources(d), seq_length=self.cfg.model.seq_length,
                                     num_samples=t.eval_samples, seed=d.seed, pack=d.pack,
                                     vocab_size=self.shape.vocab_size, length_multiple=cp_multiple(self.dims.cp))
        evaluator = Evaluator(samples, micro_batch_size=t.micro_batch_size, dp_rank=self.dp_rank,
                              dp_size=self.dp_size)
        for what in evaluator.bad_documents:
            print(f"[srft train] rank {dist.get_rank()} validation: {what}; left out", flush=True)
        return evaluator

    # ---- checkpoints ---------------------------------------------------------------------
    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def _has_resume_checkpoint(self) -> bool:
        from srft_megatron.training.checkpoint import latest_checkpoint

        return self.cfg.checkpoint.resume and latest_checkpoint(self.ckpt_root) is not None

    def _restore(self) -> None:
        from srft_megatron.training.checkpoint import latest_checkpoint, load_train_checkpoint
        from srft_megatron.training.integrity import describe

        if not self.cfg.checkpoint.resume:
            return
        ckpt = latest_checkpoint(self.ckpt_root)
        if ckpt is None:
            return
        state = load_train_checkpoint(ckpt, model_chunks=self.model, optimizer=self.optimizer,
                                      scheduler=self.scheduler)
        self.step = int(state["step"])
        self.consumed_samples = int(state["consumed_samples"])
        for key in self.counts:
            self.counts[key] = int(state.get(f"{key}_steps", self.step if key == "applied" else 0))
        self._log_line(f"resumed from {ckpt} at step {self.step} ({describe(state['verification'])})")

    def save(self) -> Path:
        """Write a train checkpoint; refuses (NonFiniteParameters) if any parameter is not finite."""
        from srft_megatron.training.checkpoint import non_finite_parameters, read_marker, save_train_checkpoint

        bad = non_finite_parameters(self.model)
        if bad:
            raise NonFiniteParameters(f"refusing to save a checkpoint at step {self.step}: {bad} parameter tensors "
                                      "hold NaN or Inf (latest still names the last good checkpoint)")
        path = save_train_checkpoint(
            self.ckpt_root, self.step, model_chunks=self.model, optimizer=self.optimizer,
            scheduler=self.scheduler, shape=self.shape,
            trainer_state={"step": self.step, "consumed_samples": self.consumed_samples,
                           **{f"{k}_steps": v for k, v in self.counts.items()}})
        if self.is_logger:
            marker = read_marker(path)
            gb = marker["bytes"] / 1e9
            self._log_line(f"saved checkpoint {path} ({gb:.3g} GB in {marker['save_seconds']:.2f} s; checksums "
                           f"{marker['checksum_seconds']:.2f} s, {marker['checksum_seconds'] / max(gb, 1e-9):.2f} s/GB)")
        return path

    # ---- one step ------------------------------------------------------------------------
    def _forward_step(self, weight_sum: torch.Tensor | None, loss_for=None):
        """The schedules' forward step; `loss_for(mb, device)` replaces the training loss
        (`evaluation.eval_loss_for` for validation)."""
        from srft_megatron.training.preflight import sequence_multiple
        from srft_megatron.training.data import block_causal_mask, packed_seq_params, trim_padding
        from srft_megatron.training.loss import loss_func_for

        device = torch.cuda.current_device() if torch.cuda.is_available() else torch.device("cpu")

        def forward_step(data_iterator, model):
            mb = next(data_iterator)
            kwargs: dict[str, Any] = {}
            if self.dims.cp > 1:  # this rank's share of every document, THD (validate: TE, packed)
                from srft_megatron.training.context_parallel import batch_on_this_rank

                mb, kwargs["packed_seq_params"] = batch_on_this_rank(
                    mb, cp=self.dims.cp, seq_length=self.cfg.model.seq_length, device=device)
                attention_mask = None
            elif self.use_te:
                attention_mask = None
                if self.cfg.data.pack:
                    if self.dims.pp == 1:  # no padding segment; PP exchanges fixed shapes
                        mb = trim_padding(mb, sequence_multiple(self.cfg))
                    kwargs["packed_seq_params"] = packed_seq_params(mb["segment_ids"].to(device))
            else:
                attention_mask = block_causal_mask(mb["segment_ids"].to(device))
            output = model(mb["tokens"].to(device), mb["position_ids"].to(device), attention_mask,
                           labels=mb["labels"].to(device), **kwargs)
            if loss_for is not None:
                return output, loss_for(mb, device)
            return output, loss_func_for(mb["loss_weights"].to(device), weight_sum)

        return forward_step

    def _data_stats(self, micro) -> torch.Tensor:
        """[sum of loss weights, bad documents, real tokens, attention pairs] of the global batch
        (fp64, all-reduced over data parallel; every rank of a TP/PP/CP group reads the same whole
        micro-batches — CP splits them only in the forward step — so the DP sum is the global one,
        and every rank gets the same numbers and takes the same decision)."""
        from megatron.core import parallel_state as ps

        stats = torch.zeros(4, dtype=torch.float64)
        for mb in micro:
            stats[0] += mb["loss_weights"].double().sum()
            stats[1] += int(mb["bad_documents"])
            stats[2] += int(mb["num_real_tokens"])
            stats[3] += int(mb["attn_pairs"])
        if torch.cuda.is_available():
            stats = stats.cuda()
        dist.all_reduce(stats, group=ps.get_data_parallel_group())
        return stats

    def _loss_stats(self, reports) -> tuple[float, float]:
        """(sum w*nll, sum w) of the step, on every rank (`loss.reduce_reports`)."""
        from srft_megatron.training.loss import reduce_reports

        wnll, wsum = (float(x) for x in reduce_reports(reports, "weighted_nll", 2).tolist())
        return wnll, wsum

    def _grads_finite(self) -> bool:
        """For megatron-core's fp32 optimizer, which has no found-inf check: every gradient
        finite on every rank (the mixed-precision / distributed optimizers check in step())."""
        flags = [torch.isfinite(p.main_grad if getattr(p, "main_grad", None) is not None else p.grad).all()
                 for chunk in self.model for p in chunk.parameters()
                 if getattr(p, "main_grad", None) is not None or p.grad is not None]
        bad = (~torch.stack(flags)).sum().float() if flags else torch.zeros(())
        if torch.cuda.is_available():
            bad = bad.cuda()
        dist.all_reduce(bad)
        return float(bad) == 0

    def train_step(self) -> dict[str, Any]:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        start = time.perf_counter()
        micro = self.batches.micro_batches(self.step)
        data = self._data_stats(micro)
        weight_sum = data[0]
        n_bad = int(data[1])
        for what in getattr(self.batches, "bad_documents", ()):  # the rank that read a bad document names it
            print(f"[srft train] rank {dist.get_rank()} step {self.step + 1}: {what}; step skipped", flush=True)
        wnll = wsum = None
        update_ok, grad_norm = False, None
        skip_reason = None
        empty = False
        if n_bad or not math.isfinite(float(weight_sum)):
            skip_reason = f"bad data: {n_bad} documents with non-finite/negative loss weights or out-of-vocabulary tokens"
        elif float(weight_sum) == 0.0:
            empty = True  # nothing to learn: not run, not applied
        else:
            for chunk in self.model:
                chunk.zero_grad_buffer()
            self.optimizer.zero_grad()
            iters = [iter(micro) for _ in self.model]
            reports = get_forward_backward_func()(
                forward_step_func=self._forward_step(weight_sum),
                data_iterator=iters if len(iters) > 1 else iters[0],
                model=self.model, num_microbatches=len(micro), seq_length=self.cfg.model.seq_length,
                micro_batch_size=self.cfg.train.micro_batch_size, forward_only=False)
            wnll, wsum = self._loss_stats(reports)
            if not math.isfinite(wnll):
                skip_reason = "non-finite loss"
            elif not self._has_found_inf and not self._grads_finite():
                skip_reason = "non-finite gradients"
            else:
                update_ok, grad_norm, _ = self.optimizer.step()  # megatron-core's found-inf skip
                if not update_ok:
                    skip_reason = "non-finite gradients (megatron-core found-inf)"
                elif grad_norm is not None and not math.isfinite(float(grad_norm)):
                    skip_reason = "non-finite gradient norm"  # applied already: counted, and it stops the run
        if update_ok:
            self.scheduler.step(increment=1)  # a step not applied leaves the schedule where it was
        self.step += 1
        self.consumed_samples += self.cfg.train.global_batch_size
        if skip_reason is not None:
            self.counts["skipped"] += 1
            self.consecutive_skips += 1
        else:
            self.consecutive_skips = 0
            self.counts["empty" if empty else "applied"] += 1
        return self._step_record(data, wnll, wsum, grad_norm, update_ok, skip_reason, empty,
                                 time.perf_counter() - start)

    def _step_record(self, data, wnll, wsum, grad_norm, update_ok, skip_reason, empty, seconds) -> dict[str, Any]:
        from srft_megatron.training.metrics import peak_memory, step_flops

        weight_sum, _, tokens, pairs = (float(x) for x in data.tolist())
        world = dist.get_world_size()
        flops = step_flops(self.shape, int(tokens), int(pairs)) if wnll is not None else 0.0
        loss = wnll / wsum if wnll is not None and wsum and wsum > 0 else None
        tflops = flops / seconds / world / 1e12
        memory_gb, memory_kind = peak_memory()  # a collective: every rank builds the record
        peak = self.cfg.logging.peak_tflops_per_gpu
        record = {
            "step": self.step,
            "loss": loss if loss is not None and math.isfinite(loss) else None,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "tokens": int(tokens),
            # real tokens / positions of the packed global batch: what packing achieved
            "packing_utilisation": tokens / (self.cfg.train.global_batch_size * self.cfg.model.seq_length),
            "weighted_tokens": weight_sum,
            "weighted_fraction": weight_sum / tokens if tokens and math.isfinite(weight_sum) else 0.0,
            "tokens_per_s": tokens / seconds,
            "tflops_per_gpu": tflops,
            "peak_memory_gb": memory_gb,
            "memory_kind": memory_kind,
            "step_time_s": seconds,
            "consumed_samples": self.consumed_samples,
            "update_ok": bool(update_ok),
            "skipped": skip_reason is not None,
            "skip_reason": skip_reason,
            "empty": empty,
        }
        if peak:
            record["mfu"] = tflops / peak
        return record

    # ---- the loop ------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._stop_requested = True

    def _should_stop(self) -> bool:
        flag = torch.tensor([1.0 if self._stop_requested else 0.0],
                            device=torch.cuda.current_device() if torch.cuda.is_available() else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def train(self) -> int:
        from tqdm import tqdm

        from srft_megatron.training.metrics import MetricsWriter

        if self.is_logger:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml(), encoding="utf-8")
        metrics = MetricsWriter(self.run_dir, enabled=self.is_logger,
                                tensorboard=self.cfg.logging.tensorboard,
                                wandb_project=self.cfg.logging.wandb_project,
                                wandb_run_name=self.cfg.logging.wandb_run_name,
                                config=self.cfg.to_dict())
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        ck, t = self.cfg.checkpoint, self.cfg.train
        last_saved = self.step if self.step > 0 else -1
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.is_logger, desc="train",
                   unit="step")
        healthy = False  # save at exit only after a clean stop (not after an error or a NaN)
        failure = None
        try:
            if self.evaluator is not None and self.step == 0:
                self._evaluate(metrics)  # the baseline every later eval is read against
            while self.step < t.steps:
                record = self.train_step()
                if (self.step % self.cfg.logging.log_interval == 0 or self.step == t.steps
                        or record["skipped"] or record["empty"]):
                    metrics.log(record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss'] or 0:.4f}", gnorm=f"{record['grad_norm'] or 0:.3f}",
                                skipped=self.counts["skipped"])
                if record["skipped"]:
                    self._log_line(f"step {self.step} skipped ({record['skip_reason']}); "
                                   f"{self.consecutive_skips} in a row, limit {t.max_skipped_steps}")
                failure = self._failure(record)
                if failure:
                    break
                if self.evaluator is not None and (self.step % t.eval_interval == 0 or self.step == t.steps):
                    self._evaluate(metrics)
                if ck.save_interval and self.step % ck.save_interval == 0:
                    self.save()
                    last_saved = self.step
                if (t.exit_after_step is not None and self.step >= t.exit_after_step) or self._should_stop():
                    break
            healthy = failure is None
        except NonFiniteParameters as exc:
            failure = str(exc)
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
            try:
                if healthy and ck.save_on_exit and self.step != last_saved and self.step > 0:
                    self.save()
            except NonFiniteParameters as exc:
                failure = str(exc)
            metrics.close()
            self._write_summary(failure)
        if failure:
            self._log_line(f"error: {failure}")
            return 1
        return 0

    def _evaluate(self, metrics) -> dict[str, Any]:
        """One eval (`training/evaluation.py`) of the model after `self.step` steps, logged as its
        own metrics.jsonl record and as one line."""
        from srft_megatron.training.evaluation import eval_loss_for

        record = {"step": self.step, **self.evaluator.run(
            self.model, self._forward_step(None, loss_for=eval_loss_for), self.cfg.model.seq_length)}
        metrics.log(record)
        nll = ", ".join(f"{k[len('val/nll/'):]} {v:.3f}" for k, v in record.items() if k.startswith("val/nll/"))
        loss = record.get("val/loss")
        self._log_line(f"eval at step {self.step}: val/loss {loss if loss is None else f'{loss:.4f}'}; NLL {nll}")
        return record

    def _failure(self, record: dict[str, Any]) -> str | None:
        """Why the run must stop after this step (None to go on)."""
        t = self.cfg.train
        if self.consecutive_skips >= t.max_skipped_steps:
            return (f"{self.consecutive_skips} steps in a row were skipped (train.max_skipped_steps="
                    f"{t.max_skipped_steps}), the last for {record['skip_reason']}; stopping without saving")
        if record["skip_reason"] == "non-finite gradient norm":
            return "the gradient norm was not finite after an applied update; stopping without saving"
        if t.max_empty_steps and self.counts["applied"] == 0 and self.counts["empty"] >= t.max_empty_steps:
            return self._empty_cause()
        return None

    def _empty_cause(self) -> str:
        """The stop message when the first steps trained nothing, with the likely cause."""
        from srft_megatron.dataset import check_dataset

        parts = []
        for prefix in self.cfg.data.prefixes:
            info = check_dataset(prefix)
            policy = (info.meta.get("policy") or {}).get("name", "?") if isinstance(info.meta.get("policy"), dict) else "?"
            parts.append(f"{prefix}: {info.weighted_tokens:.0f} of {info.tokens} tokens weighted, policy {policy}")
        return (f"the first {self.counts['empty']} steps had no weighted token (train.max_empty_steps="
                f"{self.cfg.train.max_empty_steps}): nothing is being trained. Datasets: {'; '.join(parts)}. "
                "Likely: a policy or labels that mask almost every step, a blend weighting a dataset without "
                "weighted tokens, or documents whose steps start beyond model.seq_length")

    def _write_summary(self, failure: str | None) -> None:
        summary = {"steps": self.step, **{f"{k}_steps": v for k, v in self.counts.items()},
                   "consumed_samples": self.consumed_samples, "ok": failure is None, "error": failure}
        if self.is_logger:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                                             encoding="utf-8")
            self._log_line(f"{self.step} steps: {self.counts['applied']} applied, {self.counts['skipped']} "
                           f"skipped (non-finite or bad data), {self.counts['empty']} empty (no weighted token)")

    def _log_line(self, text: str) -> None:
        if not dist.is_initialized() or dist.get_rank() == 0:
            print(f"[srft train] {text}", flush=True)


class NonFiniteParameters(RuntimeError):
    """The parameters hold NaN or Inf: nothing may be saved from them."""
