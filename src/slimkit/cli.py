"""`slimkit <command>`: a thin shell over the Python API. Training flags are generated from the
config's fields, so every YAML key has a flag (`batch_size` <-> `--batch-size`) and vice versa."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from slimkit import __version__

log = logging.getLogger("slimkit")


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
        return {"type": json.loads, "metavar": "JSON"}
    return {"type": annotation}


def add_config_flags(parser: argparse.ArgumentParser, config_cls, skip: Sequence[str] = ()) -> None:
    group = parser.add_argument_group("run configuration (each flag overrides the same key in --config)")
    for name, field in config_cls.model_fields.items():
        if name in skip:
            continue
        help_text = f"{field.description or name} (default: {field.default})"
        group.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS, help=help_text,
            **_flag_kwargs(field.annotation),
        )


def _overrides(args: argparse.Namespace, config_cls) -> dict[str, Any]:
    return {name: getattr(args, name) for name in config_cls.model_fields if hasattr(args, name)}


def cmd_train(args: argparse.Namespace) -> int:
    from slimkit.config import RunConfig, load_config
    from slimkit.runner import train_run

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc)
    overrides = _overrides(args, RunConfig)
    if args.resume:
        if overrides or args.config:
            raise ValueError("--resume continues a run with its saved config.yaml; drop the other flags")
        out = Path(args.resume)
        metrics = train_run(RunConfig(), out, resume=True)
    else:
        config = load_config(args.config, overrides)
        out = Path(args.out) if args.out else Path("runs") / f"{config.model}-{config.data}-{config.method}-s{config.seed}"
        metrics = train_run(config, out)
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


PRUNE_METHODS = ("magnitude", "obd", "taylor", "obs", "snip", "random", "gmp")


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune a trained run and fine-tune it: `train --config FROM/config.yaml --init-from FROM ...`."""
    from slimkit.config import RunConfig, make_config, read_yaml
    from slimkit.runner import CONFIG_FILE, train_run

    source = Path(args.source)
    values = read_yaml(source / CONFIG_FILE)
    values["lr"] = values.get("lr", RunConfig.model_fields["lr"].default) * 0.1  # fine-tuning default
    values.update(init_from=str(source), method=args.method, epochs=args.finetune_epochs)
    values.update(_overrides(args, RunConfig))
    config = make_config(values)
    out = Path(args.out) if args.out else source.parent / f"{source.name}-{args.method}-{config.sparsity:g}"
    _print_table([(str(out), train_run(config, out))])
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
    from slimkit.runner import read_metrics

    runs = [(run, read_metrics(run)) for run in args.runs]
    _print_table(runs)
    if args.json:
        print(json.dumps({run: m for run, m in runs}, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from slimkit.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)
    return 0


def _print_table(runs: Sequence[tuple[str, dict[str, Any]]]) -> None:
    from slimkit.report import metrics_table

    print(metrics_table(runs))


def build_parser() -> argparse.ArgumentParser:
    from slimkit.config import RunConfig

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

    sub.add_parser("models", help="list the available models").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list the available datasets").set_defaults(func=cmd_datasets)

    info = sub.add_parser("info", help="print the metrics of run folders")
    info.add_argument("runs", nargs="+", metavar="OUT")
    info.add_argument("--json", action="store_true", help="also print the raw metrics.json contents")
    info.set_defaults(func=cmd_info)

    demo = sub.add_parser("demo", help="the main job: train on Fashion-MNIST and compare")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--quick", action="store_true", help="about a minute instead of several")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; resume with `slimkit train --resume OUT`", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:  # user errors: message, no traceback
        if args.verbose:
            raise
        print(f"slimkit: error: {exc}", file=sys.stderr)
        return 2
