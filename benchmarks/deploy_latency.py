"""Channel pruning speed in deployment runtimes (issue 6): PyTorch eager, onnxruntime and OpenVINO.

For each model, the dense network and a copy with 50% of its prunable channels removed (L1, local
ratio) are exported to ONNX once. Each runtime then times dense and pruned in alternating rounds
(so load on this shared machine hits both alike), 2 threads, at each batch size. The table puts
the FLOPs reduction beside the measured speedup. Random weights: speed does not depend on their
values. OpenVINO is optional (`pip install openvino`, or `make bench`); without it that runtime is
skipped with a note.

    python benchmarks/deploy_latency.py --models resnet50 vgg16 --batches 1 16
    python benchmarks/deploy_latency.py --models timm:deit_small_patch16_224 --section deploy-latency-vit

Models are torchvision names, or timm names after "timm:" (random weights, nothing is downloaded).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, write_section  # noqa: E402

from slimkit.export.onnx import export_onnx, ort_session, run_session  # noqa: E402
from slimkit.metrics import count_flops, count_params  # noqa: E402
from slimkit.structured import prune_channels  # noqa: E402

THREADS = 2
Runner = Callable[[np.ndarray], object]


def eager_runner(model: torch.nn.Module) -> Callable[[int], Runner]:
    def make(batch: int) -> Runner:
        def run(x: np.ndarray) -> object:
            with torch.inference_mode():
                return model(torch.from_numpy(x))
        return run
    return make


def ort_runner(path: Path) -> Callable[[int], Runner]:
    session = ort_session(path, threads=THREADS)
    return lambda batch: (lambda x: run_session(session, x))


def openvino_runner(path: Path, shape: tuple[int, ...], precision: str) -> Callable[[int], Runner]:
    import openvino as ov

    core = ov.Core()

    def make(batch: int) -> Runner:
        model = core.read_model(str(path))
        model.reshape([batch, *shape])  # a static shape per batch size, as deployments compile it
        config = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x})
    return make


def build_model(name: str) -> torch.nn.Module:
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name.removeprefix("timm:"), pretrained=False)
    return torchvision.models.get_model(name, weights=None)


def alternating_medians(runners: dict[str, Runner], x: np.ndarray, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each runner, the runners timed in turn within every round."""
    samples: dict[str, list[float]] = {label: [] for label in runners}
    for round_index in range(warmup + repeats):
        for label, run in runners.items():
            start = time.perf_counter()
            run(x)
            if round_index >= warmup:
                samples[label].append(time.perf_counter() - start)
    return {label: statistics.median(times) for label, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds at batch 1 (a third of it, >= 3, above)")
    parser.add_argument("--section", default="deploy-latency", help="BENCHMARKS.md section to write")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    runtimes = ["PyTorch eager", "onnxruntime"]
    openvino_precisions: list[str] = []
    try:
        import openvino as ov

        # fp32 for a like-for-like row; OpenVINO's default on CPUs with AMX/AVX512-BF16 is bf16, what a
        # deployment gets unless it asks otherwise, so that row is added where the CPU has it.
        openvino_precisions = ["f32"] + (["bf16"] if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
                                         else [])
        runtimes += [f"OpenVINO {p}" for p in openvino_precisions]
    except ImportError:
        print("openvino is not installed: its rows are skipped (pip install openvino)", flush=True)
    shape = (3, args.size, args.size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            dense = build_model(name).eval()
            pruned = prune_channels(dense, shape, args.ratio).eval()
            flops = [count_flops(m, shape).dense for m in (dense, pruned)]
            params = [count_params(m)[0] for m in (dense, pruned)]
            example = torch.randn(1, *shape)
            paths = [export_onnx(m, example, Path(tmp) / f"{name.replace(':', '-')}-{kind}.onnx") for m, kind in
                     ((dense, "dense"), (pruned, "pruned"))]
            makers = {
                "PyTorch eager": [eager_runner(dense), eager_runner(pruned)],
                "onnxruntime": [ort_runner(p) for p in paths],
                **{f"OpenVINO {precision}": [openvino_runner(p, shape, precision) for p in paths]
                   for precision in openvino_precisions},
            }
            for runtime in runtimes:
                for batch in args.batches:
                    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
                    runners = {"dense": makers[runtime][0](batch), "pruned": makers[runtime][1](batch)}
                    repeats = args.repeats if batch == 1 else max(3, args.repeats // 3)
                    ms = alternating_medians(runners, x, warmup=2, repeats=repeats)
                    row = (name, params, flops, runtime, batch, ms["dense"] * 1e3, ms["pruned"] * 1e3)
                    rows.append(row)
                    print(row, flush=True)
            del makers
    command = "python benchmarks/" + Path(__file__).name + " " + shlex.join(sys.argv[1:])
    lines = [
        f"## Channel pruning speed in deployment runtimes: {', '.join(args.models)} "
        f"(CPU, {args.size}x{args.size}, {args.ratio:.0%} of channels)",
        "",
        f"`{command.strip()}` — {machine_line()}; every runtime limited to {THREADS} threads. Latency = median ms "
        "per forward pass, dense and pruned timed in alternating rounds; speedup = dense / pruned; "
        "efficiency = speedup / FLOPs reduction (target ≥ 0.8).",
        "",
        "| model | params dense → pruned | GFLOPs dense → pruned (reduction) | runtime | batch | ms dense → pruned | "
        "speedup | efficiency |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, params, flops, runtime, batch, dense_ms, pruned_ms in rows:
        reduction, speedup = flops[0] / flops[1], dense_ms / pruned_ms
        lines.append(
            f"| {name} | {params[0] / 1e6:.2f}M → {params[1] / 1e6:.2f}M | {flops[0] / 1e9:.2f} → {flops[1] / 1e9:.2f} "
            f"({reduction:.2f}x) | {runtime} | {batch} | {dense_ms:.1f} → {pruned_ms:.1f} | {speedup:.2f}x | "
            f"{speedup / reduction:.2f} |"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines += ["", f"Load average (1, 5, 15 min) when the measurement ended: {load}."]
    if not openvino_precisions:
        lines.append("OpenVINO was not installed for this run (`pip install openvino`).")
    write_section(args.section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
