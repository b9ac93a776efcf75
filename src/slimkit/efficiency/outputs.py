"""What a run with forgetting statistics leaves in its folder: `forgetting.npz`, the histogram
and the example grid, and the figures that go into metrics.json."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slimkit.efficiency.forgetting import NEVER_LEARNED, ForgettingTracker
from slimkit.efficiency.savings import training_savings
from slimkit.efficiency.two_phase import TwoPhaseTraining
from slimkit.utils.fileio import atomic_write

if TYPE_CHECKING:
    from slimkit.train.loop import Trainer

FORGETTING_FILE = "forgetting.npz"
HISTOGRAM_FILE = "forgetting_hist.png"
GRID_FILE = "forgetting_examples.png"
GRID_COLUMNS = 12


def save_forgetting_npz(path: str | Path, tracker: ForgettingTracker, removed: np.ndarray | None = None) -> Path:
    """Arrays indexed by training example: forgetting counts, first-learned epoch (0-based, -1:
    never), presentations, never_learned, sort scores (never learned = int32 max), and `removed`
    (phase 2 left it out; all False without two-phase training)."""
    arrays = {
        "forgetting_counts": tracker.forgetting.numpy(),
        "first_learned_epoch": tracker.first_learned.numpy(),
        "presentations": tracker.presentations.numpy(),
        "never_learned": tracker.never_learned.numpy(),
        "scores": tracker.scores().numpy(),
        "removed": np.zeros(tracker.num_examples, dtype=bool) if removed is None else np.asarray(removed, dtype=bool),
        "epochs_recorded": np.array(tracker.epochs_recorded),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def extreme_examples(tracker: ForgettingTracker, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the `k` most forgotten (never learned first) and `k` least forgotten examples
    (unforgettable, learned earliest first) among those presented."""
    presented = np.nonzero(tracker.presentations.numpy() > 0)[0]
    scores = tracker.scores().numpy()[presented].astype(np.int64)
    first = tracker.first_learned.numpy()[presented]
    first = np.where(first < 0, np.iinfo(np.int32).max, first)
    ascending = presented[np.lexsort((presented, first, scores))]
    descending = presented[np.lexsort((presented, -first, -scores))]
    return descending[:k], ascending[:k]


def write_efficiency_outputs(trainer: Trainer, out: str | Path, forward_flops_dense: int) -> dict[str, Any]:
    """Write the forgetting files into `out` and return the metrics.json entries ({} when the run
    tracked no forgetting statistics)."""
    tracker = next((cb for cb in trainer.callbacks if isinstance(cb, ForgettingTracker)), None)
    if tracker is None:
        return {}
    from slimkit.efficiency.plots import plot_example_grid, plot_histogram  # matplotlib only when needed

    two_phase = next((cb for cb in trainer.callbacks if isinstance(cb, TwoPhaseTraining)), None)
    out = Path(out)
    removed = None if two_phase is None or two_phase.removed is None else two_phase.removed.numpy()
    save_forgetting_npz(out / FORGETTING_FILE, tracker, removed)
    plot_histogram(tracker.forgetting.numpy(), tracker.never_learned.numpy(), out / HISTOGRAM_FILE,
                   title=f"{tracker.unforgettable_count()} unforgettable of {tracker.num_examples} examples "
                         f"({tracker.epochs_recorded} epochs)")
    split = getattr(trainer.loaders.train, "split", None)
    if split is not None:
        most, least = extreme_examples(tracker, GRID_COLUMNS)
        plot_example_grid(split.inputs.numpy(), split.targets.numpy(), tracker.scores().numpy(), most, least,
                          out / GRID_FILE, never_learned_score=NEVER_LEARNED)
    metrics: dict[str, Any] = {"forgetting": tracker.summary(), "unforgettable": tracker.unforgettable_count()}
    metrics["data_efficient"] = two_phase is not None
    if two_phase is not None:
        metrics["forgetting"].update(two_phase.summary())
        metrics["examples_removed"] = two_phase.summary()["examples_removed"]
        metrics.update(training_savings(trainer.history, tracker.num_examples, forward_flops_dense))
    else:
        metrics["train_examples_processed"] = int(tracker.presentations.sum())
    return metrics
