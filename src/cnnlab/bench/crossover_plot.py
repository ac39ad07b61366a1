"""The crossover picture (epoch time against parameters or batch size, log-log) and the
files a sweep writes: crossover.json and crossover.png, atomically, under runs/ by default."""

from __future__ import annotations

from pathlib import Path

from cnnlab.bench.crossover_result import CrossoverResult
from cnnlab.runtime.files import default_output_dir, write_json
from cnnlab.runtime.formatting import format_tick, shorten


def plot_crossover(result: CrossoverResult, path: str | Path) -> Path:
    """Epoch time against parameters (or batch size), log-log: one line per device and batch
    size, hollow markers where extrapolated, each crossover marked; written atomically."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

    from cnnlab.runtime.figures import new_figure, png_path, save_png

    out = png_path(path)
    by_width = result.config.model is None
    figure = new_figure((9.0, 6.0))
    ax = figure.add_subplot()
    palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    keys = result.config.batch_sizes_or_default if by_width else result.devices
    colours = {key: palette[i % len(palette)] for i, key in enumerate(keys)}
    names = result.context.get("devices", {})
    for (device, batch_size), points in result.series().items():
        xs = [p.parameters if by_width else p.batch_size for p in points]
        colour = colours[batch_size if by_width else device]
        cpu = device == "cpu"
        label = f"{device}: {shorten(names.get(device, device))}"
        label += f", batch {batch_size}" if batch_size is not None else ""
        ax.plot(xs, [p.seconds for p in points], "-" if cpu else "--", color=colour, label=label)
        for extrapolated in (False, True):
            chosen = [i for i, p in enumerate(points) if p.extrapolated == extrapolated]
            if chosen:
                ax.scatter(
                    [xs[i] for i in chosen],
                    [points[i].seconds for i in chosen],
                    marker="o" if cpu else "s",
                    s=28,
                    color=colour,
                    facecolors="white" if extrapolated else colour,
                    zorder=3,
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for crossover in result.crossovers:
        if crossover.at is None:
            continue
        width = crossover.at if by_width else None
        batch = crossover.batch_size if by_width else crossover.at
        point = result.point(crossover.accelerator, batch, width)
        unit = "n" if by_width else "batch"
        where = f"\n(batch {batch})" if by_width else ""
        ax.annotate(
            f"{crossover.accelerator} faster from {unit}={crossover.at}{where}",
            xy=(point.parameters if by_width else point.batch_size, point.seconds),
            xytext=(-10, 40),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "black"},
            bbox={"boxstyle": "round", "fc": "lightyellow", "ec": "grey"},
        )
    remarks = ["filled markers: a whole epoch timed; hollow: extrapolated from part of it"]
    remarks += [c.message for c in result.crossovers if c.at is None]
    if all(device == "cpu" for device in result.devices):
        remarks.insert(0, "no GPU measured on this machine: CPU times only")
    figure.supxlabel("\n".join(remarks), fontsize=8, color="dimgrey")
    ax.set_ylabel(f"seconds per epoch ({result.config.samples:,} samples)")
    seconds = FuncFormatter(lambda value, _: f"{value:g} s")
    ax.yaxis.set_major_formatter(seconds)
    ax.yaxis.set_minor_formatter(seconds)
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.tick_params(axis="both", which="both", labelsize=8)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if by_width:
        ax.set_xlabel("trainable parameters")
        counts = FuncFormatter(lambda value, _: format_tick(value))
        ax.xaxis.set_major_formatter(counts)
        ax.xaxis.set_minor_formatter(counts)
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        widths = sorted({p.width: p.parameters for p in result.points}.items())
        top = ax.twiny()
        top.set_xscale("log")
        top.set_xlim(ax.get_xlim())
        top.xaxis.set_major_locator(FixedLocator([params for _, params in widths]))
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xticklabels([str(n) for n, _ in widths], fontsize=8)
        top.set_xlabel("hidden width n")
        title = (
            "When is the GPU faster than the CPU? 784-n-n-10 MLP, dropout 0.5, Adam "
            f"(data: {result.data['name']})"
        )
    else:
        ax.set_xlabel("batch size")
        ax.xaxis.set_major_locator(FixedLocator(list(result.config.sweep)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(b) for b in result.config.sweep])
        title = f"{result.model}: epoch time against batch size (data: {result.data['name']})"
    ax.set_title(title, fontsize=10)
    return save_png(figure, out)


def default_out_dir() -> Path:
    """``runs/crossover-YYYYmmdd-HHMMSS`` (a new folder each run, never an old one)."""
    return default_output_dir("crossover")


def write_crossover(result: CrossoverResult, directory: str | Path) -> dict[str, Path]:
    """crossover.json and crossover.png in ``directory`` (created), each written atomically."""
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"directory must be a folder. Received: directory={str(folder)!r} (an existing file)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    png = plot_crossover(result, folder / "crossover.png")
    data = {**result.to_dict(), "files": {"plot": png.name}}
    return {"json": write_json(folder / "crossover.json", data), "png": png}
