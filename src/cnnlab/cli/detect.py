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
            help="RUN_DIR IMAGE|FOLDER...|VIDEO (a run folder or checkpoint of a zoo detector) "
            "or CFG WEIGHTS IMAGE|FOLDER...|VIDEO (Darknet's files).",
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
    draw and write the PNG). A video file (.mp4, .avi, .mov, .mkv, ...; needs PyAV, the video
    extra) is read frame by frame: "VIDEO frame N: Predicted in S seconds." and its lines for
    each frame, the annotated video written as OUT/NAME.mp4 (H.264), and its FPS end to end
    (read and decode the frame, letterbox, forward, decode, NMS, draw and encode).
    """
    from cnnlab.darknet.classify import read_names
    from cnnlab.detect.detector import (
        Detector,
        detect_frames,
        detector_from_checkpoint,
        image_frames,
        png_writer,
    )
    from cnnlab.detect.video import VideoWriter, is_video, video_frames, video_rate
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
        raise ValueError("expected at least one image, folder or video after the model")
    if names is not None:
        labels = read_names(names)
        if len(labels) < detector.classes:
            raise ValueError(
                f"--names {names} has {len(labels)} names; the model detects {detector.classes} "
                "classes: expected one name per line for each"
            )
        detector.names = labels
    video = None
    if any(is_video(path) for path in rest):
        if len(rest) > 1:
            raise ValueError(
                f"a video is detected on its own: expected one video file, or images and "
                f"folders. Received: {' '.join(rest)}"
            )
        video = Path(rest[0])
        rate = video_rate(video)  # the file checks: present, a video FFmpeg reads
        target = out_dir / f"{video.stem}.mp4"
        if target.absolute() == video.absolute():
            raise ValueError(
                f"--out {out_dir} would write the annotated video over its input {video}: "
                "expected another folder"
            )
        frames, write = (
            video_frames(video),
            VideoWriter(target, detector.names, detector.classes, rate),
        )
    else:
        files = image_files(rest)
        frames, write = image_frames(files), None
    results, written, count, start = [], None, 0, time.perf_counter()
    with output_errors("--out", out_dir, given=out_dir != DEFAULT_OUT):
        if video is None:
            write = png_writer(detector, out_dir)
        try:
            for count, result in enumerate(detect_frames(detector, frames, write), start=1):
                found, written = result.detections, result.output
                if json_output:
                    png = None if video is not None else result.output
                    results.append(_frame(count, found, detector.names, png))
                    continue
                where = found.image if video is None else f"{found.image} frame {count}"
                out.print(f"{where}: Predicted in {found.seconds:f} seconds.", markup=False)
                for row in found.rows.tolist():
                    label = detector.names[int(row[5])]
                    print(_format_row(row, label, ext_output))  # a real tab, as Darknet prints
            if video is not None:
                if count == 0:
                    raise ValueError(f"{video} holds no video frames: expected at least one")
                written = write.close()
        finally:
            if video is not None:
                write.discard()
    elapsed = time.perf_counter() - start
    if json_output:
        print_json(results)
    elif video is not None or count > 1:
        what = "frame" if count == 1 else "frames" if video is not None else "images"
        kept = f"video in {written}" if video is not None else f"PNGs in {out_dir}"
        out.print(
            f"{count} {what} in {elapsed:.2f} s: {count / elapsed:.1f} FPS end to end "
            f"(read, letterbox, forward, decode, NMS, draw); {kept}",
            markup=False,
        )
    else:
        out.print(f"Wrote {written}", markup=False)
