"""Figures of finished runs, each returned as PNG bytes (Agg backend: no display needed).

- `plot_training_curves`: train loss and test accuracy per epoch, one line per run
- `plot_accuracy_vs_sparsity`: one point per run, colour by method, marker by scheme
- `plot_layer_sparsity`: fraction of zeros per prunable layer of one run, from its saved weights
- `plot_masks`: the kept (nonzero) weights of a few layers as black/white images
- `plot_mask_activity`: weights moved per epoch by dynamic sparse training (None without such columns)
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slimkit.report.runs import RunData  # noqa: E402

DPI = 100
MASK_MAX_ROWS = 128  # larger layers show their top-left corner at full resolution
MASK_MAX_COLS = 384
MAX_MASK_LAYERS = 4
MAX_STACKED_LAYERS = 8  # mask-activity bars: the rest are summed as "other layers"
MARKERS = "osD^v<>Pp*Xh"


def to_png(fig) -> bytes:
    """The figure as PNG bytes (no timestamp or software tag, so equal figures give equal bytes);
    closes it."""
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _styles(keys: Sequence[str], options: Sequence) -> dict[str, object]:
    ordered = sorted(set(keys))
    return {key: options[i % len(options)] for i, key in enumerate(ordered)}


def plot_training_curves(runs: Sequence[RunData]) -> bytes | None:
    """Train loss and test accuracy per epoch, one line per run (None when no run has a history)."""
    with_history = [run for run in runs if run.history]
    if not with_history:
        return None
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, run in enumerate(with_history):
        color = f"C{i % 10}"
        for ax, column in ((loss_ax, "train_loss"), (acc_ax, "test_acc")):
            x, y = run.series(column)
            if column == "test_acc":
                y = y * 100
            ax.plot(x, y, marker="o", markersize=3, color=color, label=run.label)
    loss_ax.set(title="train loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title="test accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.legend(fontsize=8, loc="best")
    return to_png(fig)


def plot_accuracy_vs_sparsity(runs: Sequence[RunData]) -> bytes | None:
    """Test accuracy against measured weight sparsity, one point per run."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    points = [run for run in runs if number(run.metrics.get("test_acc")) and number(run.metrics.get("sparsity"))]
    if not points:
        return None
    methods = [str(run.metrics.get("method", "?")) for run in points]
    schemes = [str(run.metrics.get("scheme", "none")) for run in points]
    colors = _styles(methods, [f"C{i}" for i in range(10)])
    markers = _styles(schemes, MARKERS)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    seen: set[tuple[str, str]] = set()
    for run, method, scheme in zip(points, methods, schemes):
        x, y = run.metrics["sparsity"] * 100, run.metrics["test_acc"] * 100
        label = f"{method} ({scheme})" if (method, scheme) not in seen else None
        seen.add((method, scheme))
        ax.scatter([x], [y], s=60, color=colors[method], marker=markers[scheme], label=label, edgecolor="black",
                   linewidth=0.5, zorder=3)
        if len(points) <= 12:
            ax.annotate(run.label, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=7, alpha=0.8)
    ax.set(title="test accuracy vs sparsity", xlabel="weight sparsity of Conv/Linear layers (%)",
           ylabel="test accuracy (%)")
    ax.set_xlim(min(-5, ax.get_xlim()[0]), 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="method (scheme)", title_fontsize=8, loc="best")
    return to_png(fig)


def layer_sparsity(run: RunData) -> dict[str, float]:
    """Fraction of exact zeros in each Conv/Linear weight of the saved model."""
    return {name: float((matrix == 0).mean()) for name, matrix in run.layers.items()}


def plot_layer_sparsity(run: RunData) -> bytes | None:
    """Bars of the fraction of zeros per prunable layer, labelled with the layer's size."""
    if not run.has_model:
        return None
    sparsity = layer_sparsity(run)
    names = list(sparsity)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.38 * len(names) + 2), 3.8))
    bars = ax.bar(range(len(names)), [sparsity[n] * 100 for n in names], color="#4c72b0")
    for bar, name in zip(bars, names):
        size = run.layers[name].size
        ax.annotate(f"{size:,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                    textcoords="offset points", ha="center", fontsize=6, rotation=90 if len(names) > 8 else 0)
    tilt = len(names) > 4
    ax.set_xticks(range(len(names)), names, rotation=45 if tilt else 0, ha="right" if tilt else "center", fontsize=7)
    overall = run.metrics.get("sparsity")
    if isinstance(overall, (int, float)):
        ax.axhline(overall * 100, color="#c44e52", linestyle="--", linewidth=1, label=f"overall {overall:.1%}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(title=f"{run.label}: zeros per layer", ylabel="zeros (%)", ylim=(0, 112))
    ax.grid(axis="y", alpha=0.3)
    return to_png(fig)


@dataclass
class MaskView:
    """The kept weights (nonzero) of one layer as a 2-D bool array, cropped to at most
    MASK_MAX_ROWS x MASK_MAX_COLS; `shape` is the full 2-D view's shape."""

    name: str
    kept: np.ndarray
    shape: tuple[int, int]
    density: float  # kept fraction of the whole layer

    @property
    def cropped(self) -> bool:
        return self.kept.shape != self.shape


def choose_mask_layers(run: RunData, count: int = MAX_MASK_LAYERS) -> list[str]:
    """The `count` largest layers (sparse ones first), in model order."""
    layers = run.layers
    order = list(layers)
    ranked = sorted(order, key=lambda n: (not (layers[n] == 0).any(), -layers[n].size, order.index(n)))
    chosen = set(ranked[:count])
    return [name for name in order if name in chosen]


def mask_views(
    run: RunData, layers: Sequence[str] | None = None, *, max_rows: int = MASK_MAX_ROWS, max_cols: int = MASK_MAX_COLS,
) -> list[MaskView]:
    """The arrays `plot_masks` draws: kept = nonzero weight, top-left corner of big layers."""
    names = choose_mask_layers(run) if layers is None else list(layers)
    views = []
    for name in names:
        matrix = run.layers[name]
        shape = (int(matrix.shape[0]), int(matrix.shape[1]))
        views.append(MaskView(name, matrix[:max_rows, :max_cols] != 0, shape, float((matrix != 0).mean())))
    return views


def has_zeros(run: RunData) -> bool:
    return any(bool((matrix == 0).any()) for matrix in run.layers.values())


def plot_masks(run: RunData, layers: Sequence[str] | None = None, *, skip_dense: bool = True) -> bytes | None:
    """Black (kept) / white (zero) images of a few layers' weights viewed as out x in*kh*kw.
    None without a saved model, and (with `skip_dense`) when no weight is zero: all black says nothing."""
    if not run.has_model or (skip_dense and not has_zeros(run)):
        return None
    views = mask_views(run, layers)
    if not views:
        return None
    width = 7.0
    heights = [float(np.clip(width * v.kept.shape[0] / v.kept.shape[1], 0.45, 2.4)) for v in views]
    fig, axes = plt.subplots(len(views), 1, figsize=(width, sum(heights) + 0.7 * len(views)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, view in zip(axes[:, 0], views):
        rows, cols = view.kept.shape
        ax.imshow(view.kept, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest", aspect="auto",
                  extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
        part = f", first {rows} x {cols} shown" if view.cropped else ""
        ax.set_title(f"{view.name}: {view.shape[0]} x {view.shape[1]}, {view.density:.1%} kept{part}", fontsize=9,
                     loc="left")
        ax.set_xlabel("input x kernel position", fontsize=7)
        ax.set_ylabel("output", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.yaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"{run.label}: masks (black = kept weight)", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def moved_columns(run: RunData) -> list[str]:
    return [c for c in run.columns if c.startswith("moved/")]


def plot_mask_activity(run: RunData) -> bytes | None:
    """Weights moved (pruned and regrown) per epoch, stacked by layer when the history has
    `moved/<layer>` columns. None for runs without mask updates (dense, fixed masks)."""
    layers = moved_columns(run)
    if not layers and "weights_moved" not in run.columns:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.8))
    if layers:
        totals = {c: run.column(c, fill=0.0).sum() for c in layers}
        shown = sorted(layers, key=lambda c: -totals[c])[:MAX_STACKED_LAYERS]
        rest = [c for c in layers if c not in shown]
        groups = [(c.removeprefix("moved/"), [c]) for c in layers if c in shown]
        if rest:
            groups.append((f"{len(rest)} other layers", rest))
        bottom = np.zeros(len(run.x))
        for i, (label, columns) in enumerate(groups):
            heights = sum(run.column(c, fill=0.0) for c in columns)
            ax.bar(run.x, heights, bottom=bottom, color=f"C{i % 10}", label=label, width=0.8)
            bottom = bottom + heights
        ax.legend(fontsize=7, title="layer", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        x, y = run.series("weights_moved")
        ax.bar(x, y, color="#4c72b0", width=0.8)
    ax.set(title=f"{run.label}: mask updates (weights moved per epoch)", xlabel="epoch", ylabel="weights moved")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    return to_png(fig)
