"""The PNG of training curves written at the end of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .metrics import read_metrics


def _series(records: list[dict[str, Any]], section: str, key: str, field: str | None = None
            ) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for record in records:
        value = record.get(section, {}).get(key)
        if isinstance(value, dict):
            value = value.get(field or "mean")
        if isinstance(value, int | float):
            steps.append(record["step"])
            values.append(float(value))
    return steps, values


def plot_metrics(metrics_path: Path, png_path: Path) -> Path:
    import matplotlib

    # Headless: never pick an interactive backend on a training box.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = read_metrics(metrics_path)
    fig, axes = plt.subplots(2, 3, figsize=(17, 8))
    panels: list[tuple[Any, str, str, set[str] | None]] = [
        (axes[0][0], "reward", "mean reward per task x role", None),
        (axes[0][1], "solve_rate", "solver accuracy / valid-proposal rate", None),
        (axes[0][2], "verdicts", "verdicts per step (all stages)", None),
        (axes[1][0], "update", "policy update", {"loss", "grad_norm", "clip_fraction"}),
        (axes[1][1], "buffer_size", "buffer sizes", None),
        (axes[1][2], "time", "seconds per step", None),
    ]
    for axis, section, title, only in panels:
        colors: dict[str, str] = {}
        keys = sorted({k for r in records for k in r.get(section, {})
                       if only is None or k in only})
        for key in keys:
            steps, values = _series(records, section, key)
            if steps:
                [line] = axis.plot(steps, values, marker="o", label=key)
                colors[key] = line.get_color()
        if section == "solve_rate":
            # Valid-proposal rate per task, dashed, in the colour of that task's accuracy.
            for key in sorted({k for r in records for k in r.get("valid_proposal_rate", {})}):
                steps, values = _series(records, "valid_proposal_rate", key)
                if steps:
                    axis.plot(steps, values, marker="x", linestyle="--", color=colors.get(key),
                              label=f"valid {key}")
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
