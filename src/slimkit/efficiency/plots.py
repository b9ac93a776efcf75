"""Pictures of forgetting statistics: a histogram of forgetting counts, and a grid of the most and
least forgotten training examples (so users can see what the network finds "easy")."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slimkit.utils.fileio import atomic_write  # noqa: E402


def _save(fig, path: Path) -> Path:
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_histogram(forgetting: np.ndarray, never_learned: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """Bars of how many learned examples were forgotten 0, 1, 2, ... times, plus a 'never learned' bar."""
    counts = np.asarray(forgetting)[~np.asarray(never_learned, dtype=bool)]
    top = int(counts.max()) if counts.size else 0
    heights = np.bincount(counts, minlength=top + 1) if counts.size else np.zeros(1, dtype=int)
    labels = [str(k) for k in range(len(heights))] + ["never\nlearned"]
    values = list(heights) + [int(np.sum(never_learned))]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(values) + 2), 3.2))
    colors = ["#4c72b0"] * len(heights) + ["#c44e52"]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels)
    ax.set_xlabel("forgetting events")
    ax.set_ylabel("training examples")
    ax.set_title(title or f"{int(heights[0])} unforgettable of {len(forgetting)} examples")
    return _save(fig, Path(path))


def plot_example_grid(
    images: np.ndarray, labels: np.ndarray, scores: np.ndarray, most: np.ndarray, least: np.ndarray,
    path: str | Path, *, never_learned_score: int,
) -> Path:
    """Two rows of examples: `most` (most forgotten first) and `least` forgotten, each titled with
    its label and forgetting count ('never' for examples never learned).

    `images` is (N, C, H, W) (grey or RGB; uint8 or floats in [0, 1]) or (N, C, L) signals.
    """
    cols = max(len(most), len(least), 1)
    fig, axes = plt.subplots(2, cols, figsize=(1.2 * cols, 3.0), squeeze=False)
    for row, (name, chosen) in enumerate((("most forgotten", most), ("least forgotten", least))):
        for col in range(cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(chosen):
                ax.axis("off")
                continue
            i = int(chosen[col])
            _draw(ax, images[i])
            score = "never" if int(scores[i]) == never_learned_score else str(int(scores[i]))
            ax.set_title(f"y={int(labels[i])} f={score}", fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=8)
    return _save(fig, Path(path))


def _draw(ax, image: np.ndarray) -> None:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    if image.ndim == 2:  # (C, L) signal
        for channel in image:
            ax.plot(channel, linewidth=0.8)
        return
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(np.transpose(image[:3], (1, 2, 0)), 0, 1))
