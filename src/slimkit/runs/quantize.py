"""`slimkit quantize`: an int8 model of a finished run folder. The quantized folder holds
model.fp32.onnx, model.int8.onnx and metrics.json with fp32 and int8 figures side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from slimkit import __version__
from slimkit.export import export_onnx, load_model
from slimkit.metrics import count_flops, count_params, weight_sparsity
from slimkit.quant import QAT, compare, export_qat, quantize_dynamic_onnx, quantize_static_onnx, size_report
from slimkit.runs.build import load_data
from slimkit.runs.config import finetune_lr, make_config, read_yaml
from slimkit.runs.train import claim_folder
from slimkit.train import Trainer
from slimkit.utils.fileio import atomic_write_json
from slimkit.utils.run_folder import FP32_ONNX_FILE, INT8_ONNX_FILE, METRICS_FILE, RunFolder

QUANT_MODES = ("static", "dynamic", "qat")


def quantize_run(
    source: str | Path, out: str | Path, *, mode: str = "static", calib_batches: int = 32, calibration: str = "minmax",
    qat_epochs: int = 2, qat_lr: float | None = None, latency_repeats: int = 30, progress: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """int8 model of a finished run folder, with accuracy, bytes and latency next to fp32.

    `progress` (auto, bar, log, none; default: the source run's setting) shows QAT epochs,
    calibration batches, accuracy passes and latency rounds. `out` is held for the whole run; a
    non-empty folder slimkit did not write is refused unless `overwrite`."""
    if mode not in QUANT_MODES:
        raise ValueError(f"mode must be one of {', '.join(QUANT_MODES)}, got {mode!r}")
    source, out = Path(source), Path(out)
    with claim_folder(RunFolder(out), overwrite=overwrite):
        return _quantize(source, out, mode=mode, calib_batches=calib_batches, calibration=calibration,
                         qat_epochs=qat_epochs, qat_lr=qat_lr, latency_repeats=latency_repeats, progress=progress)


def _quantize(
    source: Path, out: Path, *, mode: str, calib_batches: int, calibration: str, qat_epochs: int,
    qat_lr: float | None, latency_repeats: int, progress: str | None,
) -> dict[str, Any]:
    RunFolder(out).refuse_finished_run()
    config = make_config(read_yaml(RunFolder(source).config))
    if progress is not None:
        config = config.model_copy(update={"progress": progress})
    model, sidecar = load_model(source)
    info, loaders = load_data(config)
    example = torch.zeros(2, *info.input_shape)
    fp32_path, int8_path = out / FP32_ONNX_FILE, out / INT8_ONNX_FILE
    if mode == "qat":
        qat = QAT(model)
        qat_config = config.model_copy(update={"epochs": qat_epochs, "lr": qat_lr or finetune_lr(config)})
        trainer = Trainer(model, loaders, qat_config, callbacks=[qat])
        trainer.fit()
        fake_quant_acc = trainer.evaluate(loaders.test)["acc"]
        result = export_qat(qat, example, fp32_path, int8_path, loaders.train, calib_batches=calib_batches,
                            progress=config.progress)
    else:
        export_onnx(model, example, fp32_path)
        if mode == "static":
            result = quantize_static_onnx(fp32_path, int8_path, loaders.train, calib_batches=calib_batches,
                                          calibration=calibration, progress=config.progress)
        else:
            result = quantize_dynamic_onnx(fp32_path, int8_path)
    network = model if mode != "qat" else qat.float_model()  # the float network the int8 file encodes
    (params_total, params_nonzero), flops = count_params(network), count_flops(network, info.input_shape)
    metrics: dict[str, Any] = {
        "source": str(source), "model": sidecar["model"], "dataset": config.data, "mode": mode,
        "method": f"int8-{mode}", "scheme": "none",  # what reports and tables group by
        "quantization": result.settings, "fp32_ops": result.fp32_ops,
        **compare(fp32_path, int8_path, loaders.test, info.input_shape, repeats=latency_repeats,
                  progress=config.progress),
        "size_report": size_report(network).as_dict(),
        # the same network in int8: parameter and FLOP counts as in a run folder's metrics.json
        "params_total": params_total, "params_nonzero": params_nonzero, "sparsity": weight_sparsity(network),
        "flops_dense": flops.dense, "flops_sparse": flops.sparse,
    }
    source_metrics = RunFolder(source).read_json(METRICS_FILE) or {}
    # the keys every run folder's metrics.json has; post-training quantization trains nothing
    metrics.update({"target_sparsity": source_metrics.get("target_sparsity", 0.0), "seed": config.seed,
                    "slimkit_version": __version__, "epochs": 0, "train_time_s": None, "peak_mem_bytes": None})
    if mode == "qat":
        metrics.update(epochs=qat_epochs, train_time_s=trainer.train_time_s, peak_mem_bytes=trainer.peak_rss_bytes)
        metrics["qat_fake_quant_acc"] = fake_quant_acc
        metrics["qat_epochs"] = qat_epochs
    metrics["test_acc"] = metrics["int8_acc"]
    atomic_write_json(RunFolder(out).metrics, metrics)
    return metrics
