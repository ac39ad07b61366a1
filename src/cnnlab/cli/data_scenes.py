"""`cnnlab data scenes` (detection scenes from a classification set) and `cnnlab data info` on a
detection folder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cnnlab.cli.common import WholeTable, out, output_errors, print_json, user_errors
from cnnlab.train.report import progress_bar

SCENE_FLAGS = {
    "out": "--out",
    "count": "--count",
    "size": "--size",
    "min_objects": "--min-objects",
    "max_objects": "--max-objects",
    "scale": "--scale",
    "max_iou": "--max-iou",
    "max_cover": "--max-cover",
    "noise": "--noise",
    "clutter": "--clutter",
    "test_fraction": "--test-fraction",
    "seed": "--seed",
    "data_dir": "--data-dir",
}


@user_errors(flags=SCENE_FLAGS)
def scenes_command(
    source: Annotated[
        str,
        typer.Argument(
            help="The classification set the objects come from: a dataset from "
            "`cnnlab data list` or folder:PATH."
        ),
    ] = "fashion-mnist",
    out_dir: Annotated[Path, typer.Option("--out", help="A new (or empty) folder.")] = Path(
        "scenes"
    ),
    count: Annotated[
        int, typer.Option(help="Scenes in all; --test-fraction of them are test scenes.")
    ] = 10_000,
    size: Annotated[int, typer.Option(help="Scene width and height, pixels.")] = 256,
    min_objects: Annotated[int, typer.Option(help="Fewest objects in a scene.")] = 1,
    max_objects: Annotated[
        int, typer.Option(help="Most objects in a scene (fewer where no room is left).")
    ] = 10,
    scale: Annotated[
        str,
        typer.Option(help="Object side MIN..MAX in pixels (the source image resized to a square)."),
    ] = "16..64",
    max_iou: Annotated[
        float, typer.Option(help="Largest IoU of a new object's box with an earlier one.")
    ] = 0.2,
    max_cover: Annotated[
        float,
        typer.Option(
            help="Largest share of the smaller box that a new box and an earlier one may share."
        ),
    ] = 0.5,
    noise: Annotated[int, typer.Option(help="Background: uniform noise 0..NOISE (0: black).")] = 0,
    clutter: Annotated[
        int, typer.Option(help="Fragments of source images per scene, never boxed.")
    ] = 0,
    test_fraction: Annotated[
        float, typer.Option(help="Share of --count made from the source's test images.")
    ] = 0.2,
    seed: Annotated[
        int, typer.Option(help="The same seed gives the same scenes, byte for byte.")
    ] = 0,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A folder holding the source dataset's files.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Detection scenes: objects of a classification set pasted on a canvas, train scenes from
    its training images, test scenes from its test images. Writes YOLO/Darknet files (images/,
    labels/*.txt with "class cx cy w h", names.txt, scenes.data) and COCO annotations.json per
    split. A box is the tight box of the object's nonzero pixels."""
    from cnnlab.detect.scene_files import make_scenes
    from cnnlab.detect.scenes import SceneConfig, parse_scale

    config = SceneConfig(
        source=source,
        count=count,
        size=size,
        min_objects=min_objects,
        max_objects=max_objects,
        scale=parse_scale(scale),
        max_iou=max_iou,
        max_cover=max_cover,
        noise=noise,
        clutter=clutter,
        test_fraction=test_fraction,
        seed=seed,
    )
    with _progress() as progress, output_errors("--out", out_dir):
        report = make_scenes(config, out_dir, data_dir=data_dir, progress=progress)
    result = report.as_dict()
    if json_output:
        print_json(result)
        return
    train, test = report.scenes["train"], report.scenes["test"]
    out.print(f"{escape(report.source)}: {len(report.classes)} classes", markup=False)
    table = WholeTable(title=f"scenes in {escape(str(report.out))}", title_justify="left")
    for header in ("split", "scenes", "objects", "from the source's"):
        table.add_column(header, justify="right" if header in ("scenes", "objects") else "left")
    table.add_row("train", f"{train:,}", f"{report.objects['train']:,}", "training images")
    table.add_row("test", f"{test:,}", f"{report.objects['test']:,}", "test images")
    out.print(table)
    low, high = config.scale
    out.print(
        f"{size}x{size}, {min_objects}..{max_objects} objects of {low}..{high} px, "
        f"IoU <= {max_iou}, cover <= {max_cover}, seed {seed}; box = tight box of the object's "
        "nonzero pixels",
        markup=False,
    )
    out.print(
        f"wrote train/ and test/ (images/, labels/, annotations.json), names.txt, scenes.data, "
        f"scenes.json in {report.seconds:.1f} s ({report.scenes_per_second:,.0f} scenes/s)",
        markup=False,
    )


@contextlib.contextmanager
def _progress() -> Iterator[object]:
    """A bar per split on stderr when it is a terminal, fed by make_scenes' callback."""
    with progress_bar(True) as bar:
        tasks: dict[str, object] = {}

        def update(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        yield None if bar is None else update


def detection_info(folder: Path, grid: Path | None, json_output: bool) -> None:
    """`cnnlab data info DIR` for a detection folder."""
    from cnnlab.detect.datasets import load_detection_data
    from cnnlab.detect.overview import describe, save_scene_grid

    data = load_detection_data(folder)
    info = describe(data)
    if grid is not None:
        with output_errors("--grid", grid):
            drawn = save_scene_grid(data.train, data.classes, grid, title=f"{data.name} (train)")
        info["grid"] = str(drawn)
    if json_output:
        print_json(info)
        return
    c, h, w = info["image_shape"]
    out.print(f"{info['name']}  from {info['source']} ({info['format'].upper()})", markup=False)
    out.print(f"  images   {h}x{w}x{c} (C,H,W = {c},{h},{w}), uint8", markup=False)
    for split in ("train", "test"):
        part = info[split]
        per, side = part["objects_per_image"], part["box_side"]
        out.print(
            f"  {split:<5}    {part['images']:,} images, {part['objects']:,} objects "
            f"({per['min']:g}..{per['max']:g} per image, mean {per['mean']:g}; "
            f"{part['empty_images']:,} empty), box side {_range(side)} px",
            markup=False,
        )
    table = WholeTable(title=f"{len(data.classes)} classes (objects)", title_justify="left")
    table.add_column("class", justify="right", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("train", justify="right", no_wrap=True)
    table.add_column("test", justify="right", no_wrap=True)
    for label, name in enumerate(data.classes):
        table.add_row(
            str(label),
            escape(name),
            f"{info['train']['class_objects'][label]:,}",
            f"{info['test']['class_objects'][label]:,}",
        )
    out.print(table)
    if grid is not None:
        out.print(
            f"Wrote {info['grid']} (the first 16 training scenes with their boxes)", markup=False
        )


def _range(spread: dict[str, float | None]) -> str:
    if spread["min"] is None:
        return "-"
    return f"{spread['min']:g}..{spread['max']:g} (mean {spread['mean']:g})"
