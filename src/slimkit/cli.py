"""`slimkit <command>`: a thin shell over the Python API. Training flags are generated from the
config's fields, so every YAML key has a flag (`batch_size` <-> `--batch-size`) and vice versa."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml

from slimkit import __version__

log = logging.getLogger("slimkit")


def _mapping(text: str) -> dict:
    """A flag's mapping, as JSON or YAML flow style (`{block: [8, 1], prune: cols}`), the way
    recipes write it: plain data only, no YAML aliases."""
    from slimkit.runs.config import parse_yaml

    try:
        value = parse_yaml(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"not a JSON/YAML mapping: {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{key: value}}', got {text!r}")
    return value


def _flag_kwargs(annotation: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _flag_kwargs(inner[0])
    if origin is typing.Literal:
        return {"choices": list(args), "type": type(args[0])}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is list:
        return {"nargs": "+", "type": args[0]}
    if origin is dict:
        return {"type": _mapping, "metavar": "MAPPING"}
    return {"type": annotation}


def add_config_flags(parser: argparse.ArgumentParser, config_cls, skip: Sequence[str] = ()) -> None:
    group = parser.add_argument_group("run configuration (each flag overrides the same key in --config)")
    for name, field in config_cls.model_fields.items():
        if name in skip:
            continue
        help_text = f"{field.description or name} (default: {field.default})".replace("%", "%%")  # argparse formats help
        group.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS, help=help_text,
            **_flag_kwargs(field.annotation),
        )


def _overrides(args: argparse.Namespace, config_cls) -> dict[str, Any]:
    return {name: getattr(args, name) for name in config_cls.model_fields if hasattr(args, name)}


def cmd_train(args: argparse.Namespace) -> int:
    from slimkit.runs import RunConfig, load_config, refuse_train_on_derived_run, train_run

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc)
    overrides = _overrides(args, RunConfig)
    if args.resume:
        if overrides or args.config:
            raise ValueError("--resume continues a run with its saved config.yaml; drop the other flags")
        out = args.run_folder = Path(args.resume)
        metrics = train_run(RunConfig(), out, resume=True)
    else:
        if args.config:
            refuse_train_on_derived_run(Path(args.config).parent, f"slimkit train --config {args.config}")
        config = load_config(args.config, overrides)
        out = Path(args.out) if args.out else Path("runs") / f"{config.model}-{config.data}-{config.method}-s{config.seed}"
        args.run_folder = out
        metrics = train_run(config, out, overwrite=args.overwrite)
    _print_table([(str(out), metrics)])
    return 0


def _relaunch_with_torchrun(nproc: int) -> int:
    """`slimkit train --nproc N ...` = `torchrun --nproc-per-node N -m slimkit train ...`."""
    import subprocess

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if not arg.startswith("--nproc="):
            argv.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "slimkit", *argv]
    return subprocess.run(command, check=False).returncode


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune a trained run and fine-tune it: `train --config FROM/config.yaml --init-from FROM ...`."""
    from slimkit.runs import RunConfig, prune_run
    from slimkit.runs.prune import default_prune_out

    settings = dict(method=args.method, finetune_epochs=args.finetune_epochs, overrides=_overrides(args, RunConfig))
    args.run_folder = Path(args.out or default_prune_out(args.source, **settings))
    out, metrics = prune_run(args.source, args.run_folder, overwrite=args.overwrite, **settings)
    _print_table([(str(out), metrics)])
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """Train --student with knowledge distillation from one or more teacher run folders."""
    from slimkit.runs import RunConfig, distill_run, load_config, resume_distill_run

    if args.resume:
        given = (args.teacher, args.student, args.config, args.out, args.temperature, args.alpha)
        if any(flag is not None for flag in given) or _overrides(args, RunConfig):
            raise ValueError("--resume continues a distillation with its saved settings; drop the other flags")
        out = args.run_folder = Path(args.resume)
        metrics = resume_distill_run(out)
    else:
        if not args.teacher or not args.student:
            raise ValueError("distill needs --teacher OUT (one or more) and --student MODEL, or --resume OUT")
        config = load_config(args.config, {**_overrides(args, RunConfig), "model": args.student})
        out = Path(args.out) if args.out else Path("runs") / f"{config.model}-{config.data}-kd-s{config.seed}"
        given = {"temperature": args.temperature, "alpha": args.alpha}
        args.run_folder = out
        metrics = distill_run(config, args.teacher, out, overwrite=args.overwrite,
                              **{k: v for k, v in given.items() if v is not None})
    _print_table([(str(out), metrics)])
    print(f"teacher test_acc {metrics['teacher_acc']:.2%}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """int8 model of a finished run: model.int8.onnx, model.fp32.onnx and metrics.json in --out."""
    from slimkit.runs import quantize_run

    source = Path(args.source)
    out = Path(args.out) if args.out else source.parent / f"{source.name}-int8-{args.mode}"
    m = quantize_run(source, out, mode=args.mode, calib_batches=args.calib_batches, calibration=args.calibration,
                     qat_epochs=args.qat_epochs, progress=args.progress, overwrite=args.overwrite)
    print(f"{out}: accuracy fp32 {m['fp32_acc']:.2%} -> int8 {m['int8_acc']:.2%}; "
          f"bytes {m['fp32_bytes']} -> {m['int8_bytes']} ({m['size_ratio']:.2f}x smaller)")
    for key in (k for k in m if k.startswith("latency_ms_b")):
        lat = m[key]
        print(f"  latency batch {key[12:]}: fp32 {lat['fp32']:.2f} ms, int8 {lat['int8']:.2f} ms ({lat['speedup']:.2f}x)")
    return 0


def cmd_slim(args: argparse.Namespace) -> int:
    """Network Slimming: train with L1 on BN scales (OUT/train), prune channels, fine-tune into OUT."""
    from slimkit.runs import RunConfig, load_config, slim_run

    config = load_config(args.config, _overrides(args, RunConfig))
    out = Path(args.out) if args.out else Path("runs") / f"{config.model}-{config.data}-slim{args.prune_ratio:g}-s{config.seed}"
    metrics = slim_run(config, out, sparsity_l1=args.sparsity_l1, prune_ratio=args.prune_ratio,
                       finetune_epochs=args.finetune_epochs, from_scratch=args.from_scratch, overwrite=args.overwrite)
    _print_table([(str(out / "train"), metrics_of(out / "train")), (str(out), metrics)])
    _print_channel_pruning(metrics)
    return 0


def cmd_prune_channels(args: argparse.Namespace) -> int:
    """Cut channels out of a finished run's model (a smaller architecture), then fine-tune it."""
    from slimkit.runs import RunConfig, prune_channels_run

    source = Path(args.source)
    out = Path(args.out) if args.out else source.parent / f"{source.name}-channels-{args.criterion}-{args.ratio:g}"
    metrics = prune_channels_run(source, out, ratio=args.ratio, criterion=args.criterion, scope=args.scope,
                                 round_to=args.round_to, finetune_epochs=args.finetune_epochs,
                                 from_scratch=args.from_scratch, overrides=_overrides(args, RunConfig),
                                 overwrite=args.overwrite)
    _print_table([(str(out), metrics)])
    _print_channel_pruning(metrics)
    return 0


def metrics_of(run: Path) -> dict[str, Any]:
    from slimkit.runs import read_metrics

    return read_metrics(run)


def _print_channel_pruning(m: dict[str, Any]) -> None:
    print(f"params {m['params_before']:,} -> {m['params_after']:,}; FLOPs {m['flops_before']:,} -> {m['flops_after']:,} "
          f"({m['flops_reduction']:.2f}x fewer); latency {m['latency_ms_before']:.2f} -> {m['latency_ms_after']:.2f} ms "
          f"({m['speedup']:.2f}x); test_acc after pruning {m['test_acc_before_finetune']:.2%}, "
          f"after fine-tuning {m['test_acc']:.2%}")


def cmd_export(args: argparse.Namespace) -> int:
    """ONNX file of a run folder's model (dense, sparse or channel-pruned), checked against PyTorch."""
    import torch

    from slimkit.export import load_model
    from slimkit.export.onnx import export_onnx, onnx_max_abs_diff

    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise ValueError(f"--tolerance must be a finite number >= 0, got {args.tolerance}")
    model, sidecar = load_model(args.run)
    example = torch.randn(2, *sidecar["dataset"]["input_shape"])
    path = export_onnx(model.eval(), example, args.onnx)
    diff = onnx_max_abs_diff(path, model, example)
    print(f"{path}: onnx.checker ok; onnxruntime vs PyTorch max abs diff {diff:.2e}")
    if not math.isfinite(diff) or diff > args.tolerance:  # nan > tolerance is False
        raise ValueError(f"onnxruntime output differs from PyTorch by {diff:.2e} (> {args.tolerance:g})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from slimkit.models import MODELS, classification_models

    for name, (_, description, _) in MODELS.items():
        print(f"{name:12s} {description}")
    print(f"{'tv:<name>':12s} any torchvision classifier: {', '.join(classification_models())}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from slimkit.data import DATASETS

    for name, spec in DATASETS.items():
        print(f"{name:14s} {spec.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from slimkit.runs import read_metrics

    runs = [(run, read_metrics(run)) for run in args.runs]
    _print_table(runs)
    if args.json:
        print(json.dumps({run: m for run, m in runs}, indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One self-contained HTML report (metrics table + plots) of finished run folders."""
    from slimkit.report import write_html_report

    path = write_html_report(args.runs, args.out, title=args.title, png_dir=args.png_dir)
    print(f"{path}: report of {len(args.runs)} run(s)" + (f"; PNG figures in {args.png_dir}" if args.png_dir else ""))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from slimkit.runs import run_demo

    run_demo(Path(args.out), quick=args.quick, data=args.data)
    return 0


def _print_table(runs: Sequence[tuple[str, dict[str, Any]]]) -> None:
    from slimkit.report import metrics_table

    print(metrics_table(runs))


def build_parser() -> argparse.ArgumentParser:
    from slimkit.runs import PRUNE_METHODS, QUANT_MODES, RunConfig
    from slimkit.runs.channels import FINETUNE_SETTINGS

    parser = argparse.ArgumentParser(prog="slimkit", description="Make PyTorch models smaller, faster, cheaper to train.")
    parser.add_argument("--version", action="version", version=f"slimkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model into a run folder")
    train.add_argument("--config", help="YAML file of run settings (flags override it)")
    train.add_argument("--out", help="run folder to write (default: runs/<model>-<data>-<method>-s<seed>)")
    train.add_argument("--resume", metavar="OUT", help="continue the interrupted run in folder OUT")
    train.add_argument(
        "--nproc", type=int, default=1,
        help="train with N processes through PyTorch DDP (torchrun); --batch-size is per process",
    )
    add_config_flags(train, RunConfig)
    train.set_defaults(func=cmd_train)

    prune = sub.add_parser(
        "prune", help="prune a trained run (one-shot) and fine-tune it with fixed masks",
        description="Starts from FROM's trained weights and config; any run setting can be overridden. "
        "The learning rate defaults to a tenth of FROM's. The result records the accuracy right after pruning "
        "(test_acc_before_finetune) and after fine-tuning (test_acc).",
    )
    prune.add_argument("--from", dest="source", required=True, metavar="FROM", help="finished run folder to prune")
    prune.add_argument("--method", required=True, choices=PRUNE_METHODS, help="pruning criterion or method")
    prune.add_argument("--finetune-epochs", type=int, default=5, help="epochs of fine-tuning (default: 5)")
    prune.add_argument("--out", help="run folder to write (default: FROM-METHOD-SPARSITY beside FROM)")
    add_config_flags(prune, RunConfig, skip=("method", "epochs", "init_from"))
    prune.set_defaults(func=cmd_prune)

    distill = sub.add_parser(
        "distill", help="train a student with knowledge distillation from teacher run folder(s)",
        description="Hinton KD: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE. Several --teacher "
        "folders form an ensemble (averaged logits). The result is a normal run folder.",
    )
    distill.add_argument("--teacher", action="append", metavar="OUT",
                         help="teacher run folder (repeatable; required unless --resume)")
    distill.add_argument("--student", help="student model name, e.g. lenet5 (required unless --resume)")
    distill.add_argument("--temperature", type=float, help="softmax temperature T (default: 4)")
    distill.add_argument("--alpha", type=float, help="weight of the KD term vs hard-label CE (default: 0.9)")
    distill.add_argument("--config", help="YAML file of run settings (flags override it)")
    distill.add_argument("--out", help="run folder to write (default: runs/<student>-<data>-kd-s<seed>)")
    distill.add_argument("--resume", metavar="OUT", help="continue the interrupted distillation in folder OUT")
    add_config_flags(distill, RunConfig, skip=("model",))
    distill.set_defaults(func=cmd_distill)

    quantize = sub.add_parser(
        "quantize", help="int8-quantize a finished run (ONNX Runtime QDQ) and compare it with fp32",
        description="static: calibrated int8 weights+activations; dynamic: int8 Linear weights; qat: fine-tune with "
        "fake-quant, then export. Writes model.int8.onnx, model.fp32.onnx and metrics.json into --out.",
    )
    quantize.add_argument("--from", dest="source", required=True, metavar="OUT", help="finished run folder")
    quantize.add_argument("--mode", choices=QUANT_MODES, default="static")
    quantize.add_argument("--calib-batches", type=int, default=32, help="training batches for calibration (default: 32)")
    quantize.add_argument("--calibration", choices=["minmax", "percentile", "entropy"], default="minmax")
    quantize.add_argument("--qat-epochs", type=int, default=2, help="fine-tuning epochs for --mode qat (default: 2)")
    quantize.add_argument("--out", help="folder to write (default: FROM-int8-MODE beside FROM)")
    quantize.add_argument("--progress", choices=["auto", "bar", "log", "none"],
                          help="progress display: bar on a TTY, log lines otherwise (default: FROM's setting)")
    quantize.set_defaults(func=cmd_quantize)

    slim = sub.add_parser(
        "slim", help="Network Slimming: train with L1 on BN scales, prune channels, fine-tune",
        description="Liu et al. 2017. OUT/train is the sparsity-training run; OUT holds the pruned, fine-tuned, "
        "physically smaller model with params/FLOPs/latency before and after in metrics.json.",
    )
    slim.add_argument("--sparsity-l1", type=float, default=1e-4, help="L1 strength s on BN scales (default: 1e-4)")
    slim.add_argument("--prune-ratio", type=float, default=0.5, help="fraction of BN channels removed (default: 0.5)")
    slim.add_argument("--finetune-epochs", type=int, default=5, help="epochs of fine-tuning (default: 5)")
    slim.add_argument("--from-scratch", action="store_true",
                      help="train the pruned architecture from new random weights (Liu et al. 2019) instead")
    slim.add_argument("--config", help="YAML file of run settings (flags override it)")
    slim.add_argument("--out", help="run folder (default: runs/<model>-<data>-slim<ratio>-s<seed>)")
    add_config_flags(slim, RunConfig, skip=("method", "sparsity", "init_from"))
    slim.set_defaults(func=cmd_slim)

    from slimkit.structured import CHANNEL_CRITERIA

    channels = sub.add_parser(
        "prune-channels", help="remove channels from a finished run's model (smaller, faster) and fine-tune",
        description="Starts from FROM's trained model and config; any run setting of the fine-tuning can be "
        "overridden. The learning rate defaults to a tenth of FROM's (FROM's own with --from-scratch).",
    )
    channels.add_argument("--from", dest="source", required=True, metavar="FROM", help="finished run folder")
    channels.add_argument("--ratio", type=float, default=0.5, help="fraction of prunable channels removed (default: 0.5)")
    channels.add_argument("--criterion", choices=CHANNEL_CRITERIA, default="l1", help="channel importance (default: l1)")
    channels.add_argument("--scope", choices=["local", "global"], default="local",
                          help="same ratio in every layer (local) or one threshold across layers (global)")
    channels.add_argument("--round-to", type=int, default=1, help="kept widths are multiples of this (default: 1)")
    channels.add_argument("--finetune-epochs", type=int, default=5, help="epochs of fine-tuning (default: 5)")
    channels.add_argument("--from-scratch", action="store_true", help="re-initialise the pruned architecture")
    channels.add_argument("--out", help="run folder to write (default: FROM-channels-CRITERION-RATIO beside FROM)")
    add_config_flags(channels, RunConfig, skip=[name for name in RunConfig.model_fields if name not in FINETUNE_SETTINGS])
    channels.set_defaults(func=cmd_prune_channels)
    for writer in (train, prune, distill, quantize, slim, channels):
        writer.add_argument("--overwrite", action="store_true", help="write into --out even if it holds files slimkit "
                            "did not write (same names are replaced; a slimkit run there is never overwritten)")

    export = sub.add_parser("export", help="export a run folder's model to ONNX and check it with onnxruntime")
    export.add_argument("run", metavar="OUT", help="run folder")
    export.add_argument("--onnx", required=True, help="ONNX file to write")
    export.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff allowed vs PyTorch (default: 1e-4)")
    export.set_defaults(func=cmd_export)

    sub.add_parser("models", help="list the available models").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list the available datasets").set_defaults(func=cmd_datasets)

    info = sub.add_parser("info", help="print the metrics of run folders")
    info.add_argument("runs", nargs="+", metavar="OUT")
    info.add_argument("--json", action="store_true", help="also print the raw metrics.json contents")
    info.set_defaults(func=cmd_info)

    report = sub.add_parser(
        "report", help="write an HTML report (metrics table, curves, masks) of run folders",
        description="One self-contained HTML file: the metrics table, training curves, accuracy vs sparsity, "
        "and per run its per-layer sparsity, masks and mask-update activity (PNGs embedded). See docs/reports.md.",
    )
    report.add_argument("runs", nargs="+", metavar="RUN", help="finished run folder(s)")
    report.add_argument("--out", required=True, help="HTML file to write (e.g. report.html)")
    report.add_argument("--png-dir", metavar="DIR", help="also write every figure as a PNG file into DIR")
    report.add_argument("--title", default="slimkit report", help="page title (default: slimkit report)")
    report.set_defaults(func=cmd_report)

    demo = sub.add_parser("demo", help="the main job: train on Fashion-MNIST and compare")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--quick", action="store_true", help="about a minute instead of several")
    demo.add_argument("--data", default="fashion-mnist", help=argparse.SUPPRESS)  # tests: --data synthetic
    demo.set_defaults(func=cmd_demo)
    return parser


RESUME_HINTS = {  # what continues an interrupted command from its last finished epoch; {out}: its run folder
    cmd_train: "; resume with `slimkit train --resume {out}`",
    cmd_distill: "; resume with `slimkit distill --resume {out}`",
    cmd_prune: "; resume with `slimkit train --resume {out}`",
    cmd_slim: "; run the same command again: it continues the L1 training or the fine-tuning where it stopped",
    cmd_prune_channels: "; run the same command again: it continues the fine-tuning where it stopped",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # slimkit's own lines at INFO; other libraries (e.g. the ONNX exporter's pass manager) only
    # warn, unless --verbose asks for everything.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        hint, folder = RESUME_HINTS.get(args.func, ""), getattr(args, "run_folder", None)  # set once chosen
        if folder is None and "{out}" in hint:  # stopped before it chose a run folder: nothing to resume
            hint = ""
        print(f"interrupted{hint.format(out=shlex.quote(str(folder)))}", file=sys.stderr)
        return 130
    # User errors (bad settings or files, a diverged run) and I/O failures (a full disk, a folder
    # without permission; str(exc) names the file): one line, no traceback.
    except (ValueError, OSError, FloatingPointError) as exc:
        if args.verbose:
            raise
        print(f"slimkit: error: {exc}", file=sys.stderr)
        return 2
