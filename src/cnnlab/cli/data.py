"""`cnnlab data list|info|fetch`: where the datasets are, what is in them, and fetching them."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cnnlab.cli.common import QuietOption, WholeTable, out, output_errors, print_json, user_errors
from cnnlab.data import fetch_dataset, get_entry, load_dataset, locate_datasets, save_sample_grid
from cnnlab.data.download import terminal_progress
from cnnlab.data.resolve import cnnlab_home
from cnnlab.runtime.files import atomic_write
from cnnlab.runtime.validate import check_int

data_app = typer.Typer(
    name="data",
    help="Datasets: where they are found, what is in them, and fetching them.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="A folder holding the dataset's files; looked at before anything else."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@data_app.command("list")
@user_errors(flags={"data_dir": "--data-dir"})
def list_command(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="A folder with a sub-folder per dataset, looked at first."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Every known dataset: found where (data-dir, cache, system, bundled), or how to get it."""
    rows = dataset_rows(data_dir)
    if json_output:
        print_json(rows)
        return
    out.print(datasets_table(rows))
    missing = [row for row in rows if not row["found"]]
    for row in missing:
        out.print(f"{row['name']} is not here. Three ways to get it: {escape(row['how_to_get'])}")
    if not missing:
        out.print("Every dataset is present.")
    out.print("Your own images: the name folder:PATH, with one sub-folder of images per class")


def dataset_rows(data_dir: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for location in locate_datasets(data_dir):
        entry = get_entry(location.name)
        rows.append(
            {
                "name": location.name,
                "found": location.found,
                "source": location.source,
                "path": str(location.path) if location.path else None,
                "image_shape": list(entry.shape),
                "train_count": entry.train_count,
                "test_count": entry.test_count,
                "classes": len(entry.classes),
                "description": entry.description,
                "how_to_get": location.how_to_get,
            }
        )
    return rows


def datasets_table(rows: list[dict[str, Any]]) -> WholeTable:
    """One row per dataset; names, counts and paths are never cut (in a pipe either)."""
    table = WholeTable(title="cnnlab datasets", title_justify="left")
    table.add_column("dataset", no_wrap=True)
    for header in ("image", "train", "test", "classes"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("where", no_wrap=True)
    for row in rows:
        c, h, w = row["image_shape"]
        where = (
            f"{escape(row['path'])} ({row['source']})" if row["found"] else "[dim]not present[/]"
        )
        table.add_row(
            row["name"],
            f"{h}x{w}x{c}",
            f"{row['train_count']:,}",
            f"{row['test_count']:,}",
            str(row["classes"]),
            where,
        )
    return table


@data_app.command("info")
@user_errors(flags={"path": "--grid", "per_class": "--per-class", "data_dir": "--data-dir"})
def info_command(
    name: Annotated[
        str,
        typer.Argument(
            help="A dataset from `cnnlab data list`, folder:PATH, or a detection folder "
            "(what `cnnlab data scenes` writes, YOLO or COCO)."
        ),
    ],
    data_dir: DataDirOption = None,
    grid: Annotated[
        Path | None,
        typer.Option(
            "--grid",
            help="Write a PNG with samples of every class, one row each; for a detection "
            "folder, its first 16 training scenes with their boxes.",
        ),
    ] = None,
    per_class: Annotated[int, typer.Option(help="Samples per class in the --grid.")] = 8,
    json_output: JsonOption = False,
) -> None:
    """Counts, image shape, classes with their counts, and mean/std of a dataset; for a
    detection folder, images, objects, objects per image and box sizes per split."""
    from cnnlab.detect.datasets import is_detection_folder

    if is_detection_folder(name):
        from cnnlab.cli.data_scenes import detection_info

        detection_info(Path(name), grid, json_output)
        return
    with terminal_progress() as progress:
        dataset = load_dataset(name, data_dir=data_dir, progress=progress)
    info = dataset.describe()
    if grid is not None:
        with output_errors("--grid", grid):
            info["grid"] = str(save_sample_grid(dataset, grid, per_class=per_class))
    if json_output:
        print_json(info)
        return
    c, h, w = info["image_shape"]
    mean = ", ".join(f"{v:.4f}" for v in info["mean"])
    std = ", ".join(f"{v:.4f}" for v in info["std"])
    out.print(f"[bold]{escape(info['name'])}[/]  from {escape(info['source'])}")
    out.print(f"  images   {h}x{w}x{c} (C,H,W = {c},{h},{w}), uint8")
    out.print(f"  train    {info['train_count']:,}")
    out.print(f"  test     {info['test_count']:,}")
    out.print(f"  mean     {mean}   std {std}   (0..1 units, per channel, training images)")
    out.print(f"  flip ok  {'yes' if info['flip_ok'] else 'no'} (horizontal flip as augmentation)")
    table = WholeTable(title=f"{len(info['classes'])} classes", title_justify="left")
    table.add_column("label", justify="right", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("train", justify="right", no_wrap=True)
    table.add_column("test", justify="right", no_wrap=True)
    for label, class_name in enumerate(info["classes"]):
        table.add_row(
            str(label),
            escape(class_name),
            f"{info['train_class_counts'][label]:,}",
            f"{info['test_class_counts'][label]:,}",
        )
    out.print(table)
    if grid is not None:
        out.print(f"Wrote {escape(info['grid'])} ({per_class} samples per class)")


@data_app.command("fetch")
@user_errors
def fetch_command(
    name: Annotated[str, typer.Argument(help="A dataset from `cnnlab data list`.")],
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Make a dataset available, verified: a copy in the cache or an installed system copy
    (/usr/share/datasets) is used as it is; else a download into the cache ($CNNLAB_HOME,
    default ~/.cache/cnnlab). A corrupt copy is skipped, and said so."""
    bar = contextlib.nullcontext(None) if quiet else terminal_progress()
    with bar as progress, output_errors("CNNLAB_HOME", cnnlab_home()):
        resolved = fetch_dataset(name, progress=progress)
    result = {
        "name": resolved.name,
        "path": str(resolved.path),
        "source": resolved.source,
        "skipped": list(resolved.skipped),
    }
    if json_output:
        print_json(result)
        return
    for note in resolved.skipped:
        out.print(f"skipped: {note}", markup=False)
    messages = {
        "download": f"{name}: downloaded and verified into {resolved.path}",
        "cache": f"{name}: already in the cache at {resolved.path} (verified)",
        "system": f"{name}: using the installed system copy at {resolved.path} (verified); "
        "nothing to download",
        "bundled": f"{name}: bundled with scikit-learn ({resolved.path}); nothing to fetch",
    }
    out.print(messages[resolved.source], markup=False)


@data_app.command("export-images")
@user_errors(flags={"out": "--out", "count": "--count", "data_dir": "--data-dir"})
def export_images_command(
    name: Annotated[str, typer.Argument(help="A dataset from `cnnlab data list`.")],
    count: Annotated[int, typer.Option(help="How many test images, from the first.")] = 5,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the PNGs and labels.csv.")
    ] = Path("samples"),
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A folder holding the dataset's files.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Write the first COUNT test images as PNG files (the label in each file name) and a
    labels.csv, to try `cnnlab predict` and `cnnlab explain conv --input` on real images."""
    check_int("count", count, low=1, high=MAX_EXPORT)
    dataset = load_dataset(name, data_dir=data_dir)
    count = min(count, len(dataset.test_labels))
    with output_errors("--out", out_dir):
        written = export_test_images(dataset, count, out_dir)
    if json_output:
        print_json({"name": name, "out": str(out_dir), "files": [str(p) for p, _ in written]})
        return
    for path, label in written:
        out.print(f"{path}  {label}", markup=False)
    out.print(f"labels: {out_dir / 'labels.csv'}", markup=False)


MAX_EXPORT = 10_000


def export_test_images(dataset: Any, count: int, folder: Path) -> list[tuple[Path, str]]:
    """``test-0000-sneaker.png`` ...: grayscale or RGB PNGs, written atomically, and a CSV."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        pixels = dataset.test_images[index].numpy()  # (C, H, W) uint8
        label = dataset.classes[int(dataset.test_labels[index])]
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
        path = folder / f"test-{index:04d}-{safe}.png"
        image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
        atomic_write(path, lambda file, image=image: image.save(file, format="PNG"))
        written.append((path, label))
    rows = "file,label\n" + "".join(f"{path.name},{label}\n" for path, label in written)
    atomic_write(folder / "labels.csv", lambda file: file.write(rows.encode()))
    return written
