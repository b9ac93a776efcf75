"""fp32 vs int8 (static, dynamic, QAT) on Fashion-MNIST LeNet-5, ResNet-18 224x224 latency, and
ResNet-20 int8, KD (resnet20 teacher -> lenet5 student) vs the same student alone, and the pipeline
MEST+EM&S 90% -> KD fine-tune -> int8. Writes the "quant-distill" section of BENCHMARKS.md.

    .venv/bin/python benchmarks/quant_distill.py [--epochs 3] [--kd-epochs 3] [--seeds 0 1] [--skip-kd]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from common import ROOT, machine_line, mean_std, read_metrics, run_slimkit, write_section

RUNS = Path("runs/bench-quant")


def _quantize(source: Path, mode: str, qat_epochs: int) -> dict:
    out = RUNS / f"{source.name}-int8-{mode}"
    if not (ROOT / out / "metrics.json").exists():
        run_slimkit(["quantize", "--from", str(source), "--mode", mode, "--calib-batches", "32",
                     "--qat-epochs", str(qat_epochs), "--progress", "log", "--out", str(out)])
    return json.loads((ROOT / out / "metrics.json").read_text())


def _unfinished(out: Path) -> bool:
    """Whether `out` still has to run; a run interrupted earlier starts over."""
    if read_metrics(out) is not None:
        return False
    shutil.rmtree(ROOT / out, ignore_errors=True)
    return True


def _train(name: str, args: list[str]) -> Path:
    out = RUNS / name
    if _unfinished(out):
        run_slimkit(["train", *args, "--progress", "log", "--out", str(out)])
    return out


def resnet18_latency() -> dict:
    from slimkit.data.base import DatasetInfo
    from slimkit.export import export_onnx
    from slimkit.models import build_model
    from slimkit.quant import quantize_static_onnx, side_by_side_latency

    info = DatasetInfo("imagenet-shape", (3, 224, 224), 1000, (0.0,) * 3, (1.0,) * 3)
    folder = ROOT / RUNS / "resnet18"
    fp32 = export_onnx(build_model("tv:resnet18", info).eval(), torch.zeros(2, 3, 224, 224), folder / "fp32.onnx")
    calib = [torch.randn(8, 3, 224, 224) for _ in range(4)]  # latency only: random calibration is enough
    paths = {"fp32": fp32}
    for label, kw in {"u8s8-rr": {}, "s8s8": dict(activation_dtype="int8", reduce_range=False)}.items():
        paths[label] = quantize_static_onnx(fp32, folder / f"{label}.onnx", calib, calib_batches=4, **kw).path
    return side_by_side_latency(paths, info.input_shape, (1, 8), repeats=10, warmup=2)


def quant_table(source: Path, title: str, qat_epochs: int) -> list[str]:
    """fp32 ONNX vs int8 static, dynamic and QAT of one run: accuracy, file bytes, ORT latency."""
    lines = [f"| {title} | accuracy | bytes | latency b1 (ms) | latency b8 (ms) | b8 speedup |",
             "| --- | --- | --- | --- | --- | --- |"]
    for mode in ("static", "dynamic", "qat"):
        m = _quantize(source, mode, qat_epochs)
        if mode == "static":
            lines.append(f"| fp32 ONNX | {m['fp32_acc']:.2%} | {m['fp32_bytes']:,} | {m['latency_ms_b1']['fp32']:.3f} | "
                         f"{m['latency_ms_b8']['fp32']:.3f} | 1.00x |")
        label = f"int8 {mode}" if mode != "qat" else (
            f"int8 qat ({qat_epochs} ep; fake-quant in PyTorch {m['qat_fake_quant_acc']:.2%})")
        lines.append(f"| {label} | {m['int8_acc']:.2%} | {m['int8_bytes']:,} | {m['latency_ms_b1']['int8']:.3f} | "
                     f"{m['latency_ms_b8']['int8']:.3f} | {m['latency_ms_b8']['speedup']:.2f}x |")
    return lines


def kd_lines(teacher: Path, common: list[str], seeds: list[int], settings: list[tuple[float, float]]) -> list[str]:
    """LeNet-5 alone vs distilled from `teacher` at each (T, alpha), per seed and as mean ± std."""
    header = " | ".join(f"KD T={t:g}, α={a:g}" for t, a in settings)
    lines = [f"| seed | LeNet-5 alone | {header} |", "| --- |" + " --- |" * (len(settings) + 1)]
    alone, kd = [], {setting: [] for setting in settings}
    for seed in seeds:
        alone.append(read_metrics(_train(f"lenet5-alone-s{seed}", ["--model", "lenet5", "--seed", str(seed), *common]))["test_acc"])
        for t, a in settings:
            name = f"lenet5-kd-s{seed}" if (t, a) == (4.0, 0.9) else f"lenet5-kd-T{t:g}-a{a:g}-s{seed}"
            args = ["--student", "lenet5", "--seed", str(seed), *common]
            kd[(t, a)].append(read_metrics(_distill(name, teacher, args, t, a))["test_acc"])
        lines.append(f"| {seed} | {alone[-1]:.2%} | " + " | ".join(
            f"{kd[s][-1]:.2%} ({100 * (kd[s][-1] - alone[-1]):+.2f})" for s in settings) + " |")
    lines.append(f"| mean ± std | {mean_std(alone)} | " + " | ".join(
        f"{mean_std(kd[s])} ({100 * (sum(kd[s]) - sum(alone)) / len(seeds):+.2f})" for s in settings) + " |")
    return [f"KD: resnet20 teacher ({read_metrics(teacher)['test_acc']:.2%}) -> LeNet-5, same epochs and optimizer "
            "for every student; in brackets: pt vs the student alone.", "", *lines]


def _distill(name: str, teacher: Path, args: list[str], temperature: float = 4.0, alpha: float = 0.9) -> Path:
    out = RUNS / name
    if _unfinished(out):
        run_slimkit(["distill", "--teacher", str(teacher), "--temperature", f"{temperature:g}", "--alpha", f"{alpha:g}",
                     *args, "--progress", "log", "--out", str(out)])
    return out


def pipeline_lines(dense: Path, teacher: Path, common: list[str], finetune_epochs: int) -> list[str]:
    """Deep-Compression-style chain on LeNet-5: MEST+EM&S 90% -> KD fine-tune (masks fixed) -> int8 static."""
    from slimkit.export import load_model
    from slimkit.quant import size_report
    from slimkit.quant.size import int8_weights

    sparse = _train("lenet5-mest-ems-90", ["--model", "lenet5", "--method", "mest-ems", "--sparsity", "0.9", *common])
    # fine-tuning keeps the mask: magnitude pruning of a 90%-sparse model to 90% selects its nonzeros
    finetune = ["--init-from", str(sparse), "--method", "magnitude", "--sparsity", "0.9", *common[:-4],
                "--lr", "0.0002", "--epochs", str(finetune_epochs)]
    plain = _train("lenet5-mest-ems-90-ft", ["--model", "lenet5", *finetune])
    kd = _distill("lenet5-mest-ems-90-kd", teacher, ["--student", "lenet5", *finetune])
    int8_run = RUNS / "lenet5-mest-ems-90-kd-int8-static"
    q = _quantize(kd, "static", 1)
    kd_model, _ = load_model(kd)
    codes = int8_weights(int8_run / "model.int8.onnx")
    zeros_float = sum(int((p == 0).sum()) for n, p in kd_model.named_parameters() if n.endswith("weight") and p.dim() > 1)
    zeros_int8 = sum(int((c == 0).sum()) for c in codes.values())
    lines = ["| stage | test acc | nonzero weights | fp32 dense weights (bytes) | int8 dense (bytes) | "
             "int8 values+indices (bytes) | file (bytes) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, run in (("dense LeNet-5", dense), ("MEST+EM&S 90% from scratch", sparse),
                       (f"+ fine-tune {finetune_epochs} ep, no KD", plain), (f"+ KD fine-tune {finetune_epochs} ep", kd)):
        model, _ = load_model(run)
        r = size_report(model)
        lines.append(f"| {label} | {read_metrics(run)['test_acc']:.2%} | {r.weights_nonzero:,} | {r.fp32_bytes:,} | "
                     f"{r.int8_dense_bytes:,} | {r.sparse_int8_bytes:,} | {read_metrics(run)['model_file_bytes']:,} |")
    r = q["size_report"]
    lines.append(f"| + int8 static (ONNX Runtime) | {q['int8_acc']:.2%} | {r['weights_nonzero']:,} | – | "
                 f"{r['int8_dense_bytes']:,} | {r['sparse_int8_bytes']:,} | {q['int8_bytes']:,} |")
    return [f"Pipeline (LeNet-5, Fashion-MNIST, resnet20 teacher): every stage read from its run folder. "
            f"Zero weights kept by int8: {zeros_int8:,} zero int8 codes for {zeros_float:,} zero fp32 weights.",
            "", *lines]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kd-epochs", type=int, default=3, help="epochs of the resnet20 teacher")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--resnet20-qat-epochs", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=2, help="KD fine-tuning of the sparse model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--kd-settings", nargs="+", default=["4:0.9", "4:0.5"], metavar="T:ALPHA",
                        help="KD temperature:alpha pairs to compare with the student alone")
    parser.add_argument("--skip-kd", action="store_true", help="no teacher: skip resnet20, KD and the pipeline")
    args = parser.parse_args()
    command = "python benchmarks/quant_distill.py " + " ".join(sys.argv[1:])
    settings = [tuple(float(v) for v in pair.split(":")) for pair in args.kd_settings]
    common = ["--data", "fashion-mnist", "--optimizer", "adam", "--lr", "0.002", "--epochs", str(args.epochs)]
    lenet = _train(f"lenet5-e{args.epochs}", ["--model", "lenet5", *common])
    lines = [f"Machine: {machine_line()}. Command: `{command}`.", "",
             *quant_table(lenet, "LeNet-5 Fashion-MNIST", args.qat_epochs)]
    if not args.skip_kd:
        teacher = _train(f"resnet20-e{args.kd_epochs}", ["--model", "resnet20", *common[:-1], str(args.kd_epochs)])
        lines += ["", *quant_table(teacher, "ResNet-20 Fashion-MNIST", args.resnet20_qat_epochs)]
    lat = resnet18_latency()
    lines += ["", "| torchvision ResNet-18 224x224 (ORT) | b1 (ms) | b8 (ms) | b8 speedup |", "| --- | --- | --- | --- |"]
    for label, row in lat.items():
        lines.append(f"| {label} | {row[1] * 1e3:.1f} | {row[8] * 1e3:.1f} | {lat['fp32'][8] / row[8]:.2f}x |")
    if not args.skip_kd:
        lines += ["", *kd_lines(teacher, common, args.seeds, settings), "",
                  *pipeline_lines(lenet, teacher, common, args.finetune_epochs)]
    write_section("quant-distill", "## Quantization and distillation\n\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
