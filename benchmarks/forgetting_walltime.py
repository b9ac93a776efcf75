"""Wall time saved by two-phase data-efficient training, measured on a quiet machine (issue 8).

    python benchmarks/forgetting_walltime.py --model lenet5 --epochs 30 --stats-epochs 10 \\
        --remove-fraction 0.4 --rounds 3

`forgetting.py` reports the compute saved (examples x FLOPs) by many runs that share the cores, so
its measured times are rough. This script times only three runs, one at a time, in rounds that
alternate their order so that drift in the machine's speed hits each run alike:

- plain: ordinary full-data training (no forgetting tracker), the baseline a user would run;
- tracked: full data with the forgetting tracker on, to show what the tracker itself costs;
- two-phase: `--data-efficient`, statistics for `--stats-epochs` epochs, then the rest of the
  epoch budget without the `--remove-fraction` least-forgotten examples.

Medians over the rounds of the training time (evaluation excluded), and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, read_metrics, run_job, write_section  # noqa: E402

RECIPES = {"lenet5": "recipes/dense_lenet5_fmnist.yaml", "resnet20": "recipes/dense_resnet20_fmnist.yaml"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _variants(args: argparse.Namespace) -> dict[str, tuple[str, list[str]]]:
    two_phase = ["--data-efficient", "--stats-epochs", str(args.stats_epochs),
                 "--remove-fraction", f"{args.remove_fraction:g}"]
    return {
        "plain": ("full data, no tracker", []),
        "tracked": ("full data, forgetting tracker on", ["--forgetting-stats"]),
        "two-phase": (f"two-phase: {_count(args.stats_epochs, 'statistics epoch')}, then {args.remove_fraction:.0%} removed",
                      two_phase),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(RECIPES), default="lenet5")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--stats-epochs", type=int, default=10)
    parser.add_argument("--remove-fraction", type=float, default=0.4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="threads of each run (runs go one at a time)")
    parser.add_argument("--report-only", action="store_true", help="write the table from finished runs, run nothing")
    parser.add_argument("--out", default="runs/bench/forgetting/walltime")
    args = parser.parse_args()

    variants = _variants(args)
    base = Path(args.out) / f"{args.model}-{args.epochs}ep-s{args.seed}"
    recipe = ["train", "--config", RECIPES[args.model], "--epochs", str(args.epochs), "--seed", str(args.seed)]
    folders: dict[str, list[Path]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            out = base / f"round{r}-{name}"
            folders[name].append(out)
            if not args.report_only:
                run_job((f"{name} round {r}", recipe + variants[name][1], out), threads=args.threads, resume=False)

    found = {name: [m for m in map(read_metrics, outs) if m] for name, outs in folders.items()}
    if not found["plain"]:
        raise SystemExit(f"no finished plain run under {base}")
    plain = statistics.median(m["train_time_s"] for m in found["plain"])
    rows = []
    for name, (title, _) in variants.items():
        ms = found[name]
        if not ms:
            rows.append(f"| {title} | – | – | – | – | – |")
            continue
        median = statistics.median(m["train_time_s"] for m in ms)
        saved = statistics.mean(m.get("train_compute_saved", 0.0) for m in ms)
        times = ", ".join(f"{m['train_time_s']:.0f}" for m in ms)
        rows.append(f"| {title} | {statistics.mean(m['test_acc'] for m in ms):.2%} | {median:.1f} s ({times}) | "
                    f"{median / plain:.3f}× | **{1 - median / plain:.1%}** | {saved:.1%} |")
    body = [
        f"## Wall time saved by two-phase training on {args.model} (Fashion-MNIST)", "",
        f"{args.epochs} epochs of `{RECIPES[args.model]}`, seed {args.seed}; the runs went one at a time, "
        f"{_count(args.threads, 'thread')} each, in {args.rounds} rounds of alternating order. Training time excludes "
        "evaluation; median over rounds (each round's time in brackets). Compute saved is examples × FLOPs.", "",
        "| run | test acc | train time | vs plain | time saved | compute saved |",
        "| --- | --- | --- | --- | --- | --- |", *rows, "",
        f"`python benchmarks/forgetting_walltime.py --model {args.model} --epochs {args.epochs} --stats-epochs "
        f"{args.stats_epochs} --remove-fraction {args.remove_fraction:g} --rounds {args.rounds} --seed {args.seed} "
        f"--threads {args.threads}` ({machine_line()}).",
    ]
    write_section(f"forgetting-walltime-{args.model}", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
