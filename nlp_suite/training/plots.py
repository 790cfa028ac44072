"""Training curves as PNG (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def save_training_curve(history: list[dict[str, float]], metric: str, path: Path, title: str = "") -> Path:
    """Train loss and the validation metric per epoch, side by side; one line per ensemble member (rows with
    "member")."""
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    members = sorted({int(row.get("member", 0)) for row in history})
    for member in members:
        rows = [row for row in history if int(row.get("member", 0)) == member]
        label = f"member {member}" if len(members) > 1 else None
        epochs = [row["epoch"] for row in rows]
        loss_axis.plot(epochs, [row["train_loss"] for row in rows], marker="o", label=label)
        metric_axis.plot(epochs, [row.get(metric, float("nan")) for row in rows], marker="o", label=label)
    loss_axis.set(xlabel="epoch", ylabel="train loss")
    metric_axis.set(xlabel="epoch", ylabel=f"val {metric}")
    if len(members) > 1:
        metric_axis.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
