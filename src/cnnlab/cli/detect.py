"""`cnnlab detect`: boxes in images as `darknet detect` finds them, drawn into PNGs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnlab.cli.common import out, output_errors, print_json, user_errors

DEFAULT_OUT = Path("predictions")  # Darknet writes predictions.jpg


def _format_row(row: list[float], name: str, ext: bool) -> str:
    """Darknet's ``"%s: %.0f%%"`` line; with ``ext``, AlexeyAB's box after a tab."""
    x1, y1, x2, y2, score, _ = row
    line = f"{name}: {score * 100:.0f}%"
    if ext:
        line += (
            f"\t(left_x: {x1:4.0f}   top_y: {y1:4.0f}   width: {x2 - x1:4.0f}   "
            f"height: {y2 - y1:4.0f})"
        )
    return line


def _frame(index: int, found: Any, names: list[str], png: Path | None) -> dict[str, Any]:
    """One image as an entry of Darknet's ``-out result.json`` (AlexeyAB's fields), plus the
    forward time and the PNG written."""
    height, width = found.size
    objects = []
    for x1, y1, x2, y2, score, cls in found.rows.tolist():
        objects.append(
            {
                "class_id": int(cls),
                "name": names[int(cls)],
                "relative_coordinates": {
                    "center_x": (x1 + x2) / 2 / width,
                    "center_y": (y1 + y2) / 2 / height,
                    "width": (x2 - x1) / width,
                    "height": (y2 - y1) / height,
                },
                "confidence": score,
            }
        )
    return {
        "frame_id": index,
        "filename": found.image,
        "objects": objects,
        "seconds": found.seconds,
        "png": str(png) if png else None,
    }


@user_errors(flags={"thresh": "--thresh", "nms": "--nms"})
def detect_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="RUN_DIR IMAGE|FOLDER... (a run folder or checkpoint of a zoo detector) or "
            "CFG WEIGHTS IMAGE|FOLDER... (Darknet's files).",
            show_default=False,
        ),
    ],
    thresh: Annotated[
        float, typer.Option(help="Score threshold: objectness and objectness x class above it.")
    ] = 0.5,
    nms: Annotated[
        float, typer.Option(help="IoU above which a lower box of a class is dropped.")
    ] = 0.45,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for one PNG per image with its boxes drawn.")
    ] = DEFAULT_OUT,
    names: Annotated[
        Path | None,
        typer.Option(help="Class names, one per line (default: the run's classes, or numbers)."),
    ] = None,
    ext_output: Annotated[
        bool, typer.Option("--ext-output", help="Print each box's left, top, width and height.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print Darknet's result.json fields (frame_id, ...).")
    ] = False,
) -> None:
    """Detect objects as `darknet detect` does: letterbox, forward, decode, per-class NMS.

    Prints "IMAGE: Predicted in S seconds." (the forward pass, wall clock) and one
    "name: 97%" line per box; writes OUT/NAME.png with the boxes drawn. Several images or a
    folder also give frames per second end to end (read, letterbox, forward, decode, NMS,
    draw and write the PNG).
    """
    from cnnlab.darknet.classify import read_names
    from cnnlab.detect.detector import Detector, detect_files, detector_from_checkpoint
    from cnnlab.train.predict import image_files

    source, rest = Path(inputs[0]), inputs[1:]
    if source.suffix.lower() == ".cfg":
        if not rest:
            raise ValueError(f"after the cfg {source}, expected its .weights file and images")
        detector = Detector.from_darknet(source, rest[0], thresh=thresh, nms=nms)
        rest = rest[1:]
    elif source.is_dir() or source.suffix == ".pt":
        detector = detector_from_checkpoint(source, thresh=thresh, nms=nms)
    else:
        raise ValueError(
            f"expected a run folder, a checkpoint (.pt) or a Darknet .cfg first. Received: {source}"
        )
    if not rest:
        raise ValueError("expected at least one image or folder after the model")
    if names is not None:
        labels = read_names(names)
        if len(labels) < detector.classes:
            raise ValueError(
                f"--names {names} has {len(labels)} names; the model detects {detector.classes} "
                "classes: expected one name per line for each"
            )
        detector.names = labels
    files = image_files(rest)
    frames, written, start = [], None, time.perf_counter()
    with output_errors("--out", out_dir, given=out_dir != DEFAULT_OUT):
        for index, result in enumerate(detect_files(detector, files, out_dir), start=1):
            found, written = result.detections, result.png
            if json_output:
                frames.append(_frame(index, found, detector.names, result.png))
                continue
            out.print(f"{found.image}: Predicted in {found.seconds:f} seconds.", markup=False)
            for row in found.rows.tolist():
                label = detector.names[int(row[5])]
                print(_format_row(row, label, ext_output))  # a real tab, as Darknet prints
    elapsed = time.perf_counter() - start
    if json_output:
        print_json(frames)
    elif len(files) > 1:
        out.print(
            f"{len(files)} images in {elapsed:.2f} s: {len(files) / elapsed:.1f} FPS end to end "
            f"(read, letterbox, forward, decode, NMS, draw); PNGs in {out_dir}",
            markup=False,
        )
    else:
        out.print(f"Wrote {written}", markup=False)
