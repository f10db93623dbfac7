"""Render labelled trajectories as a static, self-contained HTML page (or a page per trajectory).

    srft view trajectories.jsonl labels.jsonl -o trajectories.html
    srft view examples/trajectories/datekit-1__clean.traj examples/labels.jsonl \\
        --resolved examples/resolved.jsonl -o clean.html
    srft view trajectories.jsonl labels.jsonl --output-dir pages/   # index.html + one page each

Every step is shown with its label (colour), whether the policy keeps it, and its tokens as the
model sees them after the chat template: green tokens are trained, grey struck-through ones
are masked. Observations longer than a dozen lines are collapsed. The token spans and weights
come from the same renderer and weight policy as `srft preprocess`, so pass the same
`--tokenizer`, `--render` and policy options — or just `--dataset PREFIX`, which takes all of them
(and the input files) from the dataset's meta.json — to see what a dataset trains on:

    srft view --dataset data/srft -o srft.html

With `--run RUN_DIR` it shows a training run instead (`srft_megatron/view/run.py`): the
per-label validation NLL and the loss per step, from RUN_DIR/metrics.jsonl:

    srft view --run runs/srft -o srft-run.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from srft_megatron import policy as policy_options
from srft_megatron.errors import ConfigError, InputError
from srft_megatron.io import atomic_open


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trajectories", metavar="TRAJECTORIES", nargs="?",
                        help="trajectories.jsonl from srft ingest (or a .traj file / SWE-smith rows); "
                             "default with --dataset: the one it was made from")
    parser.add_argument("labels", metavar="LABELS", nargs="?",
                        help="labels.jsonl (DESIGN §2) from srft label or by hand; default with --dataset: "
                             "the one it was made from")
    parser.add_argument("--dataset", metavar="PREFIX",
                        help="show what this dataset (srft preprocess --output-prefix) trains on: tokenizer, "
                             "render, tools and weight policy come from PREFIX.meta.json")
    parser.add_argument("--run", metavar="RUN_DIR",
                        help="instead of trajectories, show a training run (srft train --run-dir): its "
                             "per-label validation NLL and loss per step, from RUN_DIR/metrics.jsonl")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", default=None,
                     help="the HTML page to write: an index plus every trajectory (default: trajectories.html; "
                          "with --run: RUN_DIR/run.html)")
    out.add_argument("--output-dir", metavar="DIR",
                     help="write DIR/index.html and one page per trajectory instead of a single page")
    parser.add_argument("--id", action="append", dest="ids", metavar="ID",
                        help="show only this trajectory id (repeatable)")
    parser.add_argument("--resolved", metavar="FILE",
                        help="resolved status (JSONL/CSV/swebench report) for inputs that lack it, e.g. .traj")
    parser.add_argument("--tokenizer", default="qwen2.5",
                        help="tokenizer: 'qwen2.5' (offline) or a Hugging Face tokenizer directory (default: %(default)s)")
    parser.add_argument("--render", default="tools", choices=("tools", "xml"),
                        help="how tool calls are rendered for training, as in srft preprocess (default: %(default)s)")
    parser.add_argument("--tools", metavar="FILE|PROFILE",
                        help="tools the agent was given, overriding each trajectory's own, as in srft preprocess")
    policy_options.add_arguments(parser)
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first bad record (default: reject it, say so, and go on)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _rejecter(strict: bool, rejected: list[InputError]):
    """Bad records are printed (file, line, id, reason) and counted, or stop the run (--strict)."""
    def reject(err: InputError) -> None:
        if strict:
            raise err
        print(f"rejected: {err}", file=sys.stderr)
        rejected.append(err)
    return reject


def load_trajectories(path: str, ids: list[str] | None, resolved_file: str | None,
                      strict: bool = False, rejected: list[InputError] | None = None) -> list:
    from srft_megatron.ingest import read_any, read_resolved

    rejected = [] if rejected is None else rejected
    reject = _rejecter(strict, rejected)
    resolved_errors: list[InputError] = []
    resolved = read_resolved(resolved_file, None if strict else resolved_errors) if resolved_file else {}
    for err in resolved_errors:
        reject(err)
    out, seen = [], set()
    for item in read_any(path):
        if isinstance(item.result, InputError):
            reject(item.result.located(file=item.file, line=item.line))
            continue
        traj = item.result
        if traj.id in seen:
            reject(InputError("duplicate trajectory id", file=item.file, line=item.line, traj_id=traj.id))
            continue
        seen.add(traj.id)
        if ids and traj.id not in ids:
            continue
        if traj.resolved is None:
            traj.resolved = resolved.get(traj.id, resolved.get(traj.instance_id))
        out.append(traj)
    if ids:
        missing = sorted(set(ids) - {t.id for t in out})
        if missing:
            raise InputError(f"no trajectory with id {', '.join(missing)}", file=path)
    if not out:
        raise InputError("no trajectories to show" + (f" ({len(rejected)} rejected)" if rejected else ""), file=path)
    return out


def load_labels(path: str | None, strict: bool = False, rejected: list[InputError] | None = None) -> dict:
    """Validated label records by id (each step with its optional `reason`).

    A bad label line is rejected (or stops the run under --strict); its trajectory, if the line
    names one, is then left out rather than shown without its labels."""
    from srft_megatron.trajectory import read_labels

    if path is None:  # a dataset made without labels (a policy that needs none)
        return {}
    reject = _rejecter(strict, [] if rejected is None else rejected)
    records, errors = read_labels(path)
    for err in errors:
        reject(err)
    return records


_DATASET_DEFINES = {"tokenizer": "qwen2.5", "render": "tools", "tools": None, "policy": "srft",
                    "reject_labels": None, "min_confidence": None, "label_weight": None, "unknown_resolved": None}


def dataset_settings(args: argparse.Namespace) -> tuple[dict | None, "policy_options.WeightPolicy"]:
    """With `--dataset`, the settings that define the dataset come from its meta.json (given again
    on the command line they would be a second, possibly different, definition: refused)."""
    if not args.dataset:
        if not args.trajectories or not args.labels:
            raise ConfigError("give TRAJECTORIES and LABELS, or --dataset PREFIX")
        return None, policy_options.from_args(args)
    from srft_megatron.dataset import read_meta

    given = [f"--{k.replace('_', '-')}" for k, default in _DATASET_DEFINES.items() if getattr(args, k) != default]
    if given:
        raise ConfigError(f"--dataset takes the tokenizer, render, tools and policy from {args.dataset}.meta.json; "
                          f"drop {', '.join(given)}")
    try:
        meta = read_meta(args.dataset)
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    args.tokenizer = meta["tokenizer"]["name"]
    args.render = meta["render"]
    args.tools = (meta.get("tools") or {}).get("override")
    args.trajectories = args.trajectories or meta["sources"]["trajectories"]
    args.labels = args.labels or meta["sources"].get("labels")
    return meta, policy_options.WeightPolicy.from_json(meta["policy"])


def _check_same_as_dataset(meta: dict, tokenizer, tools) -> None:
    """The tokenizer and tools found now must be the ones the dataset was made with."""
    from srft_megatron.tokenizer import tokenizer_identity
    from srft_megatron.tools import tools_sha256

    now, then = tokenizer_identity(tokenizer), meta["tokenizer"]
    for key in ("vocab_sha256", "chat_template_sha256"):
        if now[key] != then.get(key):
            raise ConfigError(f"tokenizer {then['name']!r} is not the one the dataset was made with "
                              f"({key} differs): the view would not show what it trains on")
    recorded = (meta.get("tools") or {}).get("override_sha256")
    if recorded is not None and tools_sha256(tools) != recorded:
        raise ConfigError(f"tools {meta['tools']['override']!r} changed since the dataset was made (sha256 differs)")


def main(args: argparse.Namespace) -> int:
    from srft_megatron import load_tokenizer
    from srft_megatron.render import StepRenderer
    from srft_megatron.tools import load_tools
    from srft_megatron.view import build_view, file_stem, page

    if args.run:
        return show_run(args)
    args.output = args.output or "trajectories.html"
    meta, policy = dataset_settings(args)
    tools = load_tools(args.tools) if args.tools else None
    rejected: list[InputError] = []
    trajs = load_trajectories(args.trajectories, args.ids, args.resolved, args.strict, rejected)
    labels = load_labels(args.labels, args.strict, rejected)
    bad_label_ids = {err.traj_id for err in rejected if err.file == args.labels and err.traj_id}
    trajs = [t for t in trajs if t.id not in bad_label_ids]
    if not trajs:
        raise InputError(f"no trajectories to show ({len(rejected)} rejected)", file=args.trajectories)
    for traj in trajs:  # cheap checks first: a bad input fails before the tokenizer loads
        try:
            policy.step_weights(traj, labels.get(traj.id))
        except InputError as err:
            raise err.located(file=args.labels, traj_id=traj.id) from None
    tokenizer = load_tokenizer(args.tokenizer)
    if meta is not None:
        _check_same_as_dataset(meta, tokenizer, tools)
    renderer = StepRenderer(tokenizer, args.render, tools=tools)
    views = []
    for traj in tqdm(trajs, desc="view", unit="traj", disable=args.quiet):
        try:
            views.append(build_view(traj, labels.get(traj.id), renderer, policy))
        except InputError as err:
            raise err.located(file=args.trajectories, traj_id=traj.id) from None
    noun = "trajectory" if len(views) == 1 else "trajectories"
    subtitle = (f"{len(views)} {noun} from {args.trajectories} · labels {args.labels} · policy "
                f"{policy.name} (rejects {', '.join(policy.rejected_labels)}) · tokenizer {args.tokenizer} · "
                f"render {args.render}")
    title = "SRFT trajectory viewer"
    written = []
    if args.output_dir:
        out_dir = Path(args.output_dir)
        for view in views:
            target = out_dir / f"{file_stem(view.id)}.html"
            _write(target, page([view], f"{title}: {view.id}", subtitle))
            written.append(target)
        index = out_dir / "index.html"
        _write(index, page(views, title, subtitle, index=True, link=lambda v: f"{file_stem(v.id)}.html"))
        written.insert(0, index)
    else:
        _write(Path(args.output), page(views, title, subtitle))
        written.append(Path(args.output))
    kept = sum(v.counts()["kept"] for v in views)
    steps = sum(v.counts()["steps"] for v in views)
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} pages" if len(written) > 1 else "")
          + f": {len(views)} {noun}, {steps} steps ({kept} kept, {steps - kept} rejected under "
          f"policy {policy.name})" + (f"; rejected {len(rejected)} bad records" if rejected else ""))
    return 0


def show_run(args: argparse.Namespace) -> int:
    """`--run RUN_DIR`: one page with the run's per-label validation NLL and loss per step."""
    from srft_megatron.view.run import read_metrics, run_page

    mixed = [name for name, given in (("TRAJECTORIES", args.trajectories), ("LABELS", args.labels),
                                      ("--dataset", args.dataset), ("--output-dir", args.output_dir)) if given]
    if mixed:
        raise ConfigError(f"--run shows a training run, not trajectories: drop {', '.join(mixed)}")
    metrics = read_metrics(args.run)
    for err in metrics.skipped:
        print(f"left out: {err}", file=sys.stderr)
    target = Path(args.output) if args.output else Path(args.run) / "run.html"
    _write(target, run_page(metrics, f"SRFT training run: {Path(args.run).resolve().name}"))
    print(f"wrote {target}: {metrics.describe()}"
          + ("" if metrics.has_validation() else "; no validation records (no val/* in metrics.jsonl)"))
    return 0


def _write(path: Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
