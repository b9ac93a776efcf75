"""`slimkit demo` / `make demo`: the slimkit pipeline on Fashion-MNIST, ending in one comparison table.

A dense LeNet-5 baseline, then each family of methods applied to it or beside it:

1. dense-lenet5        the baseline
2. mest-ems-90         MEST+EM&S, 90% sparse from the first step to the last (no dense phase)
3. channels-50         half of the baseline's channels cut out (a physically smaller model), fine-tuned
4. int8-dense          the baseline, int8 post-training quantization (ONNX Runtime, static)
5. int8-channels       the channel-pruned model, int8 as well
6. kd-mest-ems-90      step 2 again, with the baseline as distillation teacher

Every step writes an ordinary run folder with its own metrics.json. Every number in the table
(OUT/summary.txt) and in OUT/report.html is read back from those folders.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from slimkit.report import metrics_table, write_html_report
from slimkit.runs.channels import prune_channels_run
from slimkit.runs.config import RunConfig, make_config
from slimkit.runs.distill import distill_run
from slimkit.runs.quantize import quantize_run
from slimkit.runs.train import train_run
from slimkit.utils.fileio import atomic_write_text
from slimkit.utils.run_folder import RunFolderError, read_metrics

log = logging.getLogger("slimkit")

DENSE, SPARSE, CHANNELS = "dense-lenet5", "mest-ems-90", "channels-50"
INT8_DENSE, INT8_CHANNELS, KD = "int8-dense", "int8-channels", "kd-mest-ems-90"
TITLE = "slimkit demo: LeNet-5 on Fashion-MNIST"
QUICK = {"epochs": 2, "finetune_epochs": 1, "calib_batches": 8}  # `--quick`: about a minute instead of several


@dataclass(frozen=True)
class DemoSettings:
    out: Path
    data: str = "fashion-mnist"
    epochs: int = 15  # dense, sparse and distilled runs
    finetune_epochs: int = 5  # after channel pruning
    calib_batches: int = 32  # int8 calibration

    def config(self, **settings: Any) -> RunConfig:
        """LeNet-5 with the dense recipe's optimizer settings (recipes/dense_lenet5_fmnist.yaml)."""
        base = {"model": "lenet5", "data": self.data, "epochs": self.epochs, "lr": 0.05, "weight_decay": 5e-4}
        return make_config({**base, **settings})

    def run(self, name: str) -> Path:
        return self.out / name


# ---- the steps: each writes the run folder `s.run(name)` -------------------------------------------------
def dense_baseline(s: DemoSettings) -> None:
    train_run(s.config(), s.run(DENSE))


def sparse_from_scratch(s: DemoSettings) -> None:
    train_run(s.config(method="mest-ems", sparsity=0.9), s.run(SPARSE))


def channel_pruning(s: DemoSettings) -> None:
    # LeNet-5 has no BatchNorm, so Network Slimming (L1 on BN scales) does not apply: prune by L1 norm.
    prune_channels_run(s.run(DENSE), s.run(CHANNELS), ratio=0.5, criterion="l1", finetune_epochs=s.finetune_epochs)


def int8_dense(s: DemoSettings) -> None:
    quantize_run(s.run(DENSE), s.run(INT8_DENSE), mode="static", calib_batches=s.calib_batches)


def int8_channels(s: DemoSettings) -> None:
    quantize_run(s.run(CHANNELS), s.run(INT8_CHANNELS), mode="static", calib_batches=s.calib_batches)


def distilled_sparse_student(s: DemoSettings) -> None:
    distill_run(s.config(method="mest-ems", sparsity=0.9), [s.run(DENSE)], s.run(KD), temperature=4.0, alpha=0.9)


STEPS: list[tuple[str, str, Callable[[DemoSettings], None]]] = [
    (DENSE, "dense LeNet-5 baseline", dense_baseline),
    (SPARSE, "MEST+EM&S, 90% sparse from scratch", sparse_from_scratch),
    (CHANNELS, "50% of the baseline's channels removed, fine-tuned", channel_pruning),
    (INT8_DENSE, "int8 static PTQ of the baseline", int8_dense),
    (INT8_CHANNELS, "int8 static PTQ of the channel-pruned model", int8_channels),
    (KD, "MEST+EM&S 90% student distilled from the baseline", distilled_sparse_student),
]


def notes(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One line per row: what the step did, and the figures the table has no column for."""
    what = {name: text for name, text, _ in STEPS}
    width = max(len(name) for name, _ in results)
    lines = []
    for name, m in results:
        extra = ""
        if "int8_acc" in m:
            extra = (f"file: model.int8.onnx, latency: ONNX Runtime; the fp32 ONNX model: {m['fp32_acc']:.2%}, "
                     f"{m['fp32_bytes']:,} bytes, {m['latency_ms_b1']['fp32']:.3f} ms")
        elif "test_acc_before_finetune" in m:
            extra = f"train s: fine-tuning only; {m['test_acc_before_finetune']:.2%} right after pruning"
        elif "teacher_acc" in m:
            extra = f"teacher {m['teacher_acc']:.2%}"
        lines.append(f"{name.ljust(width)}  {what.get(name, '')}" + (f" ({extra})" if extra else ""))
    return lines


DEMO_MARKER = ".slimkit-demo"  # marks a folder whose run folders the demo made and may replace


def _claim_demo_folder(out: Path, run_dirs: list[Path]) -> None:
    """The demo replaces its run folders on every run; it refuses to replace folders it did not make."""
    marked = (out / DEMO_MARKER).exists() or (out / "summary.txt").exists()  # summary.txt: demos before the marker
    if not marked and (foreign := [str(d) for d in run_dirs if d.exists()]):
        raise RunFolderError(f"{out} holds run folders that `slimkit demo` did not make ({', '.join(foreign)}); "
                              "the demo replaces its folders, so choose another --out or move them")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / DEMO_MARKER, "run folders made by `slimkit demo`, which replaces them on every run\n")


def run_demo(out: Path, *, quick: bool = False, data: str = "fashion-mnist") -> list[tuple[str, dict[str, Any]]]:
    """Run every step into `out/<step>/`, print the comparison table, write summary.txt and report.html."""
    out = Path(out)
    settings = DemoSettings(out, data=data, **(QUICK if quick else {}))
    _claim_demo_folder(out, [settings.run(name) for name, _, _ in STEPS])
    for name, what, step in STEPS:
        run_dir = settings.run(name)
        if run_dir.exists():
            shutil.rmtree(run_dir)  # the demo owns its folders and always starts fresh
        log.info(f"== {name}: {what} -> {run_dir}")
        step(settings)
    results = [(name, read_metrics(settings.run(name))) for name, _, _ in STEPS]
    table = metrics_table(results)
    summary = table + "\n\n" + "\n".join(notes(results)) + "\n"
    atomic_write_text(out / "summary.txt", summary)
    report = write_html_report([settings.run(name) for name, _, _ in STEPS], out / "report.html", title=TITLE)
    print(summary)
    print(f"Run folders, summary.txt and {Path(report).name} are in {out}/ "
          f"(`slimkit info {out}/*/` prints their metrics).")
    return results
