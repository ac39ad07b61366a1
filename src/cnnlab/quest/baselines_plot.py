"""The baselines board as a picture: test accuracy against training time (log scale), one
labelled point per model, the slide's best score as a line where the data is MNIST."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.quest.baseline_data import SLIDE_BEST
from cnnlab.runtime.formatting import format_duration

if TYPE_CHECKING:
    from cnnlab.quest.baselines import BaselinesResult


def plot_baselines(result: BaselinesResult, path: str | Path) -> Path:
    """Test accuracy against training time (log scale), one labelled point per model."""
    from matplotlib.ticker import FuncFormatter  # lazily, as cnnlab.train.plots does

    from cnnlab.runtime.figures import new_figure, png_path, save_png

    out = png_path(path)
    figure = new_figure((8.6, 5.4))
    ax = figure.add_subplot()
    colours = {"classical": "tab:blue", "cnn": "tab:red"}
    for kind, colour in colours.items():
        rows = [row for row in result.rows if row.kind == kind]
        if rows:
            ax.scatter(
                [max(row.train_seconds, 1e-3) for row in rows],
                [100 * row.accuracy for row in rows],
                s=60,
                color=colour,
                edgecolor="black",
                linewidth=0.6,
                zorder=3,
                label="CNN (cnnlab trainer)" if kind == "cnn" else "classical (scikit-learn)",
            )
    accuracies = [100 * row.accuracy for row in result.rows]
    low, high = min(accuracies), max(accuracies)
    pad = max(1.0, 0.1 * (high - low))
    y_low, y_high = max(0.0, low - pad), min(100.0, high + pad)
    for row, nudge in zip(result.rows, _label_nudges(result.rows, y_low, y_high), strict=True):
        ax.annotate(
            f"{row.name}\n{100 * row.accuracy:.2f}%, "
            f"predict {format_duration(row.predict_seconds)}",
            xy=(max(row.train_seconds, 1e-3), 100 * row.accuracy),
            xytext=(7, nudge),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
        )
    if result.data["name"] == SLIDE_BEST["data"]:
        ax.axhline(100 * SLIDE_BEST["score"], color="grey", linestyle="--", linewidth=1)
        ax.text(
            0.01,
            100 * SLIDE_BEST["score"],
            " slide's best semester score: KNN 97.369%",
            transform=ax.get_yaxis_transform(),
            va="bottom",
            fontsize=8,
            color="dimgrey",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    seconds = [max(row.train_seconds, 1e-3) for row in result.rows]
    ax.set_xlim(min(seconds) / 2, max(seconds) * 6)  # room for the labels on the right
    ax.set_ylim(y_low, y_high)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", axis="x", alpha=0.1)
    ax.set_xlabel("training time (seconds, log scale)")
    ax.set_ylabel("test accuracy (%)")
    data = result.data
    ax.set_title(
        f"{data['name']}: accuracy against training time\n"
        f"{data['train_count']:,} of {data['train_total']:,} training images, "
        f"{data['test_count']:,} test images, seed {result.config.seed}",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8.5)
    return save_png(figure, out)


def _label_nudges(rows, y_low: float, y_high: float, *, height_pt: float = 300.0) -> list[float]:
    """Vertical label offsets (points) so that two-line labels of nearby points do not overlap:
    best first, a label within a decade of training time and 24 pt of a placed one moves below."""
    line_pt = 24.0  # two lines of 8.5-pt text
    placed: list[tuple[float, float]] = []  # (log10 seconds, label centre in points)
    nudges = {}
    for index in sorted(range(len(rows)), key=lambda i: -rows[i].accuracy):
        row = rows[index]
        x = math.log10(max(row.train_seconds, 1e-3))
        y = (100 * row.accuracy - y_low) / max(y_high - y_low, 1e-9) * height_pt
        centre = y
        for other_x, other_centre in sorted(placed, key=lambda p: -p[1]):
            if abs(other_x - x) < 1.0 and abs(other_centre - centre) < line_pt:
                centre = other_centre - line_pt
        placed.append((x, centre))
        nudges[index] = centre - y
    return [nudges[i] for i in range(len(rows))]
