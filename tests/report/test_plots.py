import json

import numpy as np
import pytest

from slimkit.cli import main
from slimkit.report import read_run
from slimkit.report.plots import (
    layer_sparsity, mask_views, plot_accuracy_vs_sparsity, plot_layer_sparsity, plot_mask_activity, plot_masks,
    plot_training_curves,
)
from slimkit.report.runs import RunData

from tests.report.conftest import RUN_FLAGS, train

PNG = b"\x89PNG\r\n\x1a\n"


def _partial_segments(kept: np.ndarray, length: int = 8) -> int:
    """Column segments of `length` rows (the block scheme's units) that are partly kept."""
    partial = 0
    for start in range(0, kept.shape[0], length):
        segment = kept[start:start + length]
        partial += int((segment.any(axis=0) & ~segment.all(axis=0)).sum())
    return partial


def test_masks_differ_between_unstructured_and_block(runs):
    unstructured = mask_views(read_run(runs["unstructured"]))
    block = mask_views(read_run(runs["block"]))
    assert [v.name for v in unstructured] == [v.name for v in block] == ["conv2", "fc1", "fc2", "fc3"]
    for u, b in zip(unstructured, block):
        assert u.kept.shape == b.kept.shape and u.kept.dtype == bool
        assert not np.array_equal(u.kept, b.kept)
        assert _partial_segments(b.kept) == 0  # block [8, 1] / cols: whole 8 x 1 bars kept or dropped
        assert _partial_segments(u.kept) > 0  # unstructured: single weights
    fc1 = next(v for v in block if v.name == "fc1")
    assert fc1.shape == (120, 400) and fc1.kept.shape == (120, 384) and fc1.cropped  # capped size
    assert 0.05 < fc1.density < 0.15


def test_layer_sparsity_comes_from_the_saved_weights(runs):
    run = read_run(runs["unstructured"])
    per_layer = layer_sparsity(run)
    assert list(per_layer) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    sizes = {name: run.layers[name].size for name in per_layer}
    overall = sum(per_layer[n] * sizes[n] for n in per_layer) / sum(sizes.values())
    assert overall == pytest.approx(run.metrics["sparsity"], abs=1e-9)
    assert set(layer_sparsity(read_run(runs["dense"])).values()) == {0.0}


def test_figures_are_png_and_skipped_without_data(runs):
    all_runs = [read_run(path) for path in runs.values()]
    for png in (plot_training_curves(all_runs), plot_accuracy_vs_sparsity(all_runs)):
        assert png.startswith(PNG)
    dense, sparse = read_run(runs["dense"]), read_run(runs["block"])
    for png in (plot_layer_sparsity(dense), plot_layer_sparsity(sparse), plot_masks(sparse), plot_mask_activity(sparse)):
        assert png.startswith(PNG)
    assert plot_mask_activity(dense) is None  # no weights_moved / moved/... columns
    assert plot_masks(dense) is None and plot_masks(dense, skip_dense=False).startswith(PNG)
    assert any(c.startswith("moved/") for c in sparse.columns)


def test_mask_activity_without_per_layer_columns(tmp_path):
    run = RunData(tmp_path, "fake", {}, [{"epoch": 1.0, "weights_moved": 10.0}, {"epoch": 2.0, "weights_moved": 4.0}])
    assert plot_mask_activity(run).startswith(PNG)
    assert plot_mask_activity(RunData(tmp_path, "fake", {}, [{"epoch": 1.0, "train_loss": 1.0}])) is None


def test_compressed_layers_are_read(tmp_path):
    run_dir = train(tmp_path / "compressed", *RUN_FLAGS["unstructured"], "--storage", "compressed")
    assert json.loads((run_dir / "model.json").read_text())["compressed_layers"]
    run = read_run(run_dir)
    assert {name: m.shape for name, m in run.layers.items()}["fc1"] == (120, 400)
    assert [v.name for v in mask_views(run)] == ["conv2", "fc1", "fc2", "fc3"]
    assert plot_masks(run).startswith(PNG)


def test_channel_pruned_run(runs, tmp_path):
    out = tmp_path / "channels"
    assert main(["prune-channels", "--from", str(runs["dense"]), "--ratio", "0.5", "--finetune-epochs", "1",
                 "--out", str(out)]) == 0
    run = read_run(out)
    assert run.layers["conv1"].shape[0] < read_run(runs["dense"]).layers["conv1"].shape[0]  # physically smaller
    assert plot_layer_sparsity(run).startswith(PNG)
