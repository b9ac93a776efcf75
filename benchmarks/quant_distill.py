"""fp32 vs int8 (static, dynamic, QAT) on Fashion-MNIST LeNet-5, ResNet-18 224x224 latency, and
KD (resnet20 teacher -> lenet5 student) vs the same student alone. Writes the "quant-distill"
section of BENCHMARKS.md.

    .venv/bin/python benchmarks/quant_distill.py [--epochs 3] [--kd-epochs 3] [--seeds 0 1] [--skip-kd]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from common import ROOT, machine_line, mean_std, read_metrics, run_slimkit, write_section

RUNS = Path("runs/bench-quant")


def _quantize(source: Path, mode: str) -> dict:
    out = RUNS / f"{source.name}-int8-{mode}"
    if not (ROOT / out / "metrics.json").exists():
        run_slimkit(["quantize", "--from", str(source), "--mode", mode, "--calib-batches", "32", "--out", str(out)])
    return json.loads((ROOT / out / "metrics.json").read_text())


def _train(name: str, args: list[str]) -> Path:
    out = RUNS / name
    if read_metrics(out) is None:
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kd-epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--skip-kd", action="store_true")
    args = parser.parse_args()
    command = "python benchmarks/quant_distill.py " + " ".join(sys.argv[1:])
    common = ["--data", "fashion-mnist", "--optimizer", "adam", "--lr", "0.002", "--epochs", str(args.epochs)]
    lenet = _train(f"lenet5-e{args.epochs}", ["--model", "lenet5", *common])
    lines = [f"Machine: {machine_line()}. Command: `{command}`.", "",
             "| LeNet-5 Fashion-MNIST | accuracy | bytes | latency b1 (ms) | latency b8 (ms) | b8 speedup |",
             "| --- | --- | --- | --- | --- | --- |"]
    first = True
    for mode in ("static", "dynamic", "qat"):
        m = _quantize(lenet, mode)
        if first:
            lines.append(f"| fp32 ONNX | {m['fp32_acc']:.2%} | {m['fp32_bytes']:,} | {m['latency_ms_b1']['fp32']:.3f} | "
                         f"{m['latency_ms_b8']['fp32']:.3f} | 1.00x |")
            first = False
        lines.append(f"| int8 {mode} | {m['int8_acc']:.2%} | {m['int8_bytes']:,} | {m['latency_ms_b1']['int8']:.3f} | "
                     f"{m['latency_ms_b8']['int8']:.3f} | {m['latency_ms_b8']['speedup']:.2f}x |")
    lat = resnet18_latency()
    lines += ["", "| torchvision ResNet-18 224x224 (ORT) | b1 (ms) | b8 (ms) | b8 speedup |", "| --- | --- | --- | --- |"]
    for label, row in lat.items():
        lines.append(f"| {label} | {row[1] * 1e3:.1f} | {row[8] * 1e3:.1f} | {lat['fp32'][8] / row[8]:.2f}x |")
    if not args.skip_kd:
        teacher = _train(f"resnet20-e{args.kd_epochs}", ["--model", "resnet20", *common[:-1], str(args.kd_epochs)])
        alone, kd = [], []
        for seed in args.seeds:
            alone.append(read_metrics(_train(f"lenet5-alone-s{seed}", ["--model", "lenet5", "--seed", str(seed), *common]))["test_acc"])
            out = RUNS / f"lenet5-kd-s{seed}"
            if read_metrics(out) is None:
                run_slimkit(["distill", "--teacher", str(teacher), "--student", "lenet5", "--seed", str(seed),
                             "--temperature", "4", "--alpha", "0.9", *common, "--progress", "log", "--out", str(out)])
            kd.append(read_metrics(out)["test_acc"])
        lines += ["", f"KD: resnet20 teacher ({read_metrics(teacher)['test_acc']:.2%}) -> LeNet-5, T=4, alpha=0.9, "
                  f"seeds {args.seeds}: alone {mean_std(alone)}, with KD {mean_std(kd)}."]
    write_section("quant-distill", "## Quantization and distillation\n\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
