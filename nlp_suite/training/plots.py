"""Training curves as PNG (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def save_training_curve(history: list[dict[str, float]], metric: str, path: Path, title: str = "") -> Path:
    """Train loss and the validation metric per epoch, side by side."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], marker="o")
    loss_axis.set(xlabel="epoch", ylabel="train loss")
    metric_axis.plot(epochs, [row.get(metric, float("nan")) for row in history], marker="o", color="tab:green")
    metric_axis.set(xlabel="epoch", ylabel=f"val {metric}")
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
