"""Example forgetting and two-phase data-efficient training on Fashion-MNIST (issue 8).

    python benchmarks/forgetting.py --model lenet5 --epochs 30 --stats-epochs 10 \\
        --fractions 0.1 0.2 0.3 0.4 --stats-lengths 5 15 --sparsities 0.9 0.95 --seeds 0 1 --workers 2

Each seed runs into its own folder (`runs/bench/forgetting/MODEL-EPOCHSep-sSEED`); the tables give
mean ± std over the seeds whose runs finished.

Three studies, each a set of ordinary `slimkit train` runs:
1. Unforgettable examples (Toneva "all epochs" mode, `--forgetting-stats`): dense and MEST+EM&S at
   each sparsity, statistics over the whole run, nothing removed. The dense run is also the
   full-data reference of the other two studies (the tracker does not change training).
2. Accuracy vs fraction removed: `--data-efficient --stats-epochs S --remove-fraction f`, plus the
   threshold rule `--remove-forgetting-le 0` (and MEST+EM&S with data efficiency at the first
   sparsity, compared with its full-data run).
3. Accuracy vs statistics-phase length at the fraction `--length-fraction`.

Training compute saved = 1 - (examples processed x forward FLOPs) / (all examples every epoch x
the same forward FLOPs); see `slimkit.efficiency.savings`. Wall time saved compares each run's
measured training time (evaluation excluded) with the full-data reference's, so it includes the
statistics phase and any overhead; runs share the CPU with each other, so treat it as rough.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, read_metrics, run_jobs, write_section  # noqa: E402

RECIPES = {"lenet5": "recipes/dense_lenet5_fmnist.yaml", "resnet20": "recipes/dense_resnet20_fmnist.yaml"}
TARGET_SAVED, TARGET_LOSS_PT = 0.20, 0.3


def _jobs(args: argparse.Namespace, base: Path, seed: int) -> tuple[list, dict]:
    recipe = ["train", "--config", RECIPES[args.model], "--epochs", str(args.epochs), "--seed", str(seed),
              "--device", args.device]
    sparse = lambda s: ["--method", "mest-ems", "--sparsity", f"{s:g}"]  # noqa: E731
    de = lambda stats, rule: ["--data-efficient", "--stats-epochs", str(stats), *rule]  # noqa: E731
    named: dict[str, tuple[str, list[str]]] = {"dense-all": ("dense, full data", ["--forgetting-stats"])}
    for s in args.sparsities:
        named[f"mest-ems-{s:g}-all"] = (f"MEST+EM&S {s:.0%}, full data", [*sparse(s), "--forgetting-stats"])
    for f in args.fractions:
        named[f"dense-frac{f:g}-e{args.stats_epochs}"] = (
            f"dense, remove {f:.0%}", de(args.stats_epochs, ["--remove-fraction", f"{f:g}"]))
    for k in args.thresholds:
        named[f"dense-le{k}-e{args.stats_epochs}"] = (
            f"dense, remove forgetting ≤ {k}", de(args.stats_epochs, ["--remove-forgetting-le", str(k)]))
    for length in args.stats_lengths:
        named[f"dense-frac{args.length_fraction:g}-e{length}"] = (
            f"dense, remove {args.length_fraction:.0%}", de(length, ["--remove-fraction", f"{args.length_fraction:g}"]))
    if args.sparsities and args.fractions:
        s, f = args.sparsities[0], args.fractions[min(1, len(args.fractions) - 1)]
        named[f"mest-ems-{s:g}-frac{f:g}-e{args.stats_epochs}"] = (
            f"MEST+EM&S {s:.0%}, remove {f:.0%}", [*sparse(s), *de(args.stats_epochs, ["--remove-fraction", f"{f:g}"])])
    jobs = [(name, recipe + extra, base / name) for name, (_, extra) in named.items()]
    return jobs, {name: title for name, (title, _) in named.items()}


def _stats_epochs(m: dict) -> str:
    return str(m["forgetting"].get("stats_epochs", "–")) if "forgetting" in m else "–"


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def _spread(values: list[float], form: str) -> str:
    """'mean ± std' (just the value for one seed)."""
    if len(values) < 2:
        return form.format(_mean(values))
    return f"{form.format(statistics.mean(values))} ± {form.format(statistics.stdev(values)).lstrip('+')}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(RECIPES), default="lenet5")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--stats-epochs", type=int, default=10, help="statistics phase of the fraction/threshold runs")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--thresholds", type=int, nargs="*", default=[0])
    parser.add_argument("--stats-lengths", type=int, nargs="*", default=[5, 15], help="more statistics-phase lengths")
    parser.add_argument("--length-fraction", type=float, default=0.3, help="fraction removed in the length study")
    parser.add_argument("--sparsities", type=float, nargs="*", default=[0.9, 0.95])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--report-only", action="store_true", help="write the tables from finished runs, run nothing")
    parser.add_argument("--out", default="runs/bench/forgetting")
    args = parser.parse_args()

    jobs, titles = [], {}  # (seed, run name, job)
    for seed in args.seeds:
        seed_jobs, titles = _jobs(args, Path(args.out) / f"{args.model}-{args.epochs}ep-s{seed}", seed)
        jobs += [(seed, name, (f"{name} (seed {seed})", cmd, out)) for name, cmd, out in seed_jobs]
    if not args.report_only:
        run_jobs([job for _, _, job in jobs], args.workers)
    found: dict[str, dict[int, dict]] = {}  # run name -> seed -> metrics
    for seed, name, (_, _, out) in jobs:
        if m := read_metrics(out):
            found.setdefault(name, {})[seed] = m
    full = found.get("dense-all", {})

    seed_note = (f"mean ± std over seeds {', '.join(map(str, args.seeds))}" if len(args.seeds) > 1
                 else f"seed {args.seeds[0]}")
    lines = [f"## Example forgetting and data-efficient training on {args.model} (Fashion-MNIST)", ""]
    lines += [f"{args.epochs} epochs with `{RECIPES[args.model]}`; final-epoch test accuracy, {seed_note}. "
              "Unforgettable = learned and never forgotten over the statistics epochs (Toneva et al. 2019).",
              ""]
    lines += ["| run | sparsity | test acc | unforgettable | never learned | stats epochs |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, runs in found.items():
        if name.endswith("-all"):
            ms = list(runs.values())
            total = ms[0].get("train_examples_processed", 0) // max(ms[0]["epochs"], 1)
            unforgettable = [m["forgetting"]["unforgettable"] for m in ms]
            lines.append(
                f"| {titles[name]} | {ms[0]['sparsity']:.1%} | {_spread([m['test_acc'] * 100 for m in ms], '{:.2f}%')} | "
                f"{_mean(unforgettable):,.0f} ({_mean(unforgettable) / max(total, 1):.1%}) | "
                f"{_mean([m['forgetting']['never_learned'] for m in ms]):,.0f} | {ms[0]['forgetting']['forgetting_epochs']} |")
    lines += ["", "| run | stats epochs | removed | test acc | Δ vs full data (pt) | compute saved | train time | "
              "time saved (measured) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    best = None
    for name, runs in found.items():
        if name.endswith("-all"):
            continue
        references = found.get(name.split("-frac")[0] + "-all", {}) if name.startswith("mest") else full
        paired = [(m, references[seed]) for seed, m in runs.items() if seed in references]
        deltas = [(m["test_acc"] - ref["test_acc"]) * 100 for m, ref in paired]
        time_saved = [1 - m["train_time_s"] / ref["train_time_s"] for m, ref in paired]
        ms = list(runs.values())
        saved = _mean([m["train_compute_saved"] for m in ms])
        lines.append(
            f"| {titles[name]} | {_stats_epochs(ms[0])} | {_mean([m['examples_removed'] for m in ms]):,.0f} | "
            f"{_spread([m['test_acc'] * 100 for m in ms], '{:.2f}%')} | {_spread(deltas, '{:+.2f}')} | {saved:.1%} | "
            f"{_mean([m['train_time_s'] for m in ms]):.0f} s | {_mean(time_saved):.1%} |")
        delta = _mean(deltas)
        meets = saved >= TARGET_SAVED - 1e-9 and delta >= -TARGET_LOSS_PT - 1e-9  # float slack
        if meets and (best is None or saved > best[1]):
            best = (titles[name], saved, delta)
    if full:
        ms = list(full.values())
        lines.append(f"| dense, full data (reference) | – | 0 | {_spread([m['test_acc'] * 100 for m in ms], '{:.2f}%')} "
                     f"| 0 | 0% | {_mean([m['train_time_s'] for m in ms]):.0f} s | 0% |")
    over = "mean over seeds" if len(args.seeds) > 1 else f"seed {args.seeds[0]}"
    verdict = (f"**confirmed** by {best[0]}: {best[1]:.1%} saved, {best[2]:+.2f} pt ({over})" if best else
               "**not confirmed** by any run above")
    lines += ["", f"Target ≥ {TARGET_SAVED:.0%} of training compute saved with ≤ {TARGET_LOSS_PT} pt accuracy loss: "
              f"{verdict}.", ""]
    command = (f"python benchmarks/forgetting.py --model {args.model} --epochs {args.epochs} --stats-epochs "
               f"{args.stats_epochs} --fractions {' '.join(f'{f:g}' for f in args.fractions)} --thresholds "
               f"{' '.join(map(str, args.thresholds))} --stats-lengths {' '.join(map(str, args.stats_lengths))} "
               f"--length-fraction {args.length_fraction:g} --sparsities {' '.join(f'{s:g}' for s in args.sparsities)} "
               f"--seeds {' '.join(map(str, args.seeds))}{f' --device {args.device}' if args.device != 'cpu' else ''} "
               f"--workers {args.workers}")
    lines.append(f"`{command}` ({machine_line()}; one process per run, `OMP_NUM_THREADS=1`, {args.workers} in parallel).")
    write_section(f"forgetting-{args.model}", "\n".join(lines))


if __name__ == "__main__":
    main()
