"""Network Slimming on Fashion-MNIST (issue 6): accuracy after 50% / 70% channel pruning, fine-tuned
vs trained from scratch, against the dense model; params, FLOPs and latency.

Per model and seed:
  1. a dense run and a Network Slimming run (`slimkit slim`: L1 on BN scales for --epochs, prune the
     first ratio with one global |gamma| threshold, fine-tune --finetune-epochs at a tenth of the lr);
  2. from the same L1-trained model, the other ratios (`slimkit prune-channels --criterion bn_gamma
     --scope global`, the same selection `slim` makes), and every ratio trained from scratch for the
     full --epochs (Liu et al. 2019, "Scratch-E").

    python benchmarks/netslim_fmnist.py --models resnet20 vgg11 --epochs 20 --finetune-epochs 10 --seeds 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, mean_std, read_metrics, run_jobs, write_section  # noqa: E402

RECIPE = "recipes/dense_resnet20_fmnist.yaml"  # SGD 0.1, cosine, wd 5e-4, augmentation: both models


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet20", "vgg11"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--sparsity-l1", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="fashion-mnist", help="dataset (synthetic: a quick smoke run)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="threads per run")
    parser.add_argument("--out", default="runs/bench/netslim")
    parser.add_argument("--report-only", action="store_true", help="write the table from finished runs, run nothing")
    args = parser.parse_args()

    base = Path(args.out)
    common = ["--config", RECIPE, "--epochs", str(args.epochs), "--device", args.device, "--data", args.data]
    first, second = [], []
    for model in args.models:
        for seed in args.seeds:
            run = f"{model}-s{seed}"
            first.append((f"dense {run}", ["train", *common, "--model", model, "--seed", str(seed)], base / f"dense-{run}"))
            slim = base / f"slim{args.ratios[0]:g}-{run}"
            first.append((f"slim {run}", ["slim", *common, "--model", model, "--seed", str(seed),
                                          "--sparsity-l1", str(args.sparsity_l1), "--prune-ratio", str(args.ratios[0]),
                                          "--finetune-epochs", str(args.finetune_epochs)], slim))
            source = ["prune-channels", "--from", str(slim / "train"), "--criterion", "bn_gamma", "--scope", "global"]
            for ratio in args.ratios[1:]:
                out = base / f"slim{ratio:g}-{run}"
                second.append((out.name, [*source, "--ratio", str(ratio), "--finetune-epochs",
                                          str(args.finetune_epochs)], out))
            for ratio in args.ratios:
                out = base / f"scratch{ratio:g}-{run}"
                second.append((out.name, [*source, "--ratio", str(ratio), "--from-scratch", "--finetune-epochs",
                                          str(args.epochs)], out))
    if not args.report_only:
        run_jobs(first, args.workers, threads=args.threads)
        run_jobs(second, args.workers, threads=args.threads)
    write_table(args, base)


def _mean(metrics: list[dict], key: str) -> float:
    return sum(m[key] for m in metrics) / len(metrics)


def _row_runs(base: Path, model: str, ratio: float, l1_ratio: float, seed: int) -> list[dict | None]:
    """metrics.json of the dense, L1-training, fine-tuned and from-scratch runs behind one table row
    (None for a run not finished). The L1 training lives in the first ratio's slim folder."""
    return [read_metrics(path) for path in (
        base / f"dense-{model}-s{seed}", base / f"slim{l1_ratio:g}-{model}-s{seed}" / "train",
        base / f"slim{ratio:g}-{model}-s{seed}", base / f"scratch{ratio:g}-{model}-s{seed}")]


def write_table(args, base: Path) -> None:
    rows = []
    for model in args.models:
        for ratio in args.ratios:
            # a row averages only the seeds whose every run is finished, so its columns compare like for like
            finished = {s: _row_runs(base, model, ratio, args.ratios[0], s) for s in args.seeds}
            finished = {s: runs for s, runs in finished.items() if all(runs)}
            dense, sparse_train, tuned, scratch = (list(column) for column in zip(*finished.values())) \
                if finished else ([], [], [], [])
            seeds_done = ", ".join(map(str, finished)) or "–"
            cells = [
                mean_std([m["test_acc"] for m in dense]), mean_std([m["test_acc"] for m in sparse_train]),
                mean_std([m["test_acc_before_finetune"] for m in tuned]), mean_std([m["test_acc"] for m in tuned]),
                mean_std([m["test_acc"] for m in scratch]),
            ]
            if tuned:
                # each seed prunes to its own architecture: sizes are means over seeds, latency is the
                # first seed's (latencies from different machines do not average)
                first = tuned[0]
                cells += [
                    f"{first['params_before'] / 1e6:.2f}M → {_mean(tuned, 'params_after') / 1e6:.2f}M",
                    f"{first['flops_before'] / 1e6:.0f}M → {_mean(tuned, 'flops_after') / 1e6:.0f}M "
                    f"({_mean(tuned, 'flops_reduction'):.2f}x)",
                    f"{first['latency_ms_before']:.2f} → {first['latency_ms_after']:.2f} ({first['speedup']:.2f}x)",
                ]
            else:
                cells += ["–"] * 3
            rows.append(f"| {model} | {ratio:.0%} | {seeds_done} | " + " | ".join(cells) + " |")
    seeds = " ".join(map(str, args.seeds))
    body = [
        "## Network Slimming on Fashion-MNIST", "",
        "Final-epoch test accuracy, mean ± std over the seeds listed in each row. Dense and L1 training: "
        f"{args.epochs} epochs of `{RECIPE}` (the L1 run adds s = {args.sparsity_l1:g} on BN scales). Pruning removes "
        f"the given fraction of BN channels below one global |γ| threshold; fine-tuning runs {args.finetune_epochs} "
        f"epochs at a tenth of the lr; scratch trains the pruned architecture from new weights for {args.epochs} "
        "epochs at the full lr. Params and FLOPs after pruning: mean over seeds (each seed prunes to its own "
        "widths). Latency: batch 1, median ms in PyTorch eager, the first seed's run, before → after.", "",
        "| model | channels removed | seeds | dense | L1-trained | pruned, no fine-tuning | fine-tuned | "
        "from scratch | params | FLOPs | latency ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "",
        f"`python benchmarks/netslim_fmnist.py --models {' '.join(args.models)} --epochs {args.epochs} "
        f"--finetune-epochs {args.finetune_epochs} --ratios {' '.join(f'{r:g}' for r in args.ratios)} "
        f"--seeds {seeds} --device {args.device}` ({machine_line()}).",
    ]
    write_section("netslim-fmnist", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
