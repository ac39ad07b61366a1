"""`cnnlab evaluate RUN --data DIR` for a detector: COCO mAP on a detection folder."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from cnnlab.cli.common import WholeTable, out, output_errors, print_json


def evaluation_folder(run: Path, data_name: str, split: str) -> Path:
    """Where the metrics and the precision-recall PNG go: inside the run folder (next to the
    checkpoint file when one is given), one folder per data and split."""
    return (run if run.is_dir() else run.parent) / f"evaluate-{data_name}-{split}"


def evaluate_detection(
    run: Path, data: Path, split: str, batch_size: int, json_output: bool
) -> None:
    """Detect in every image of ``split`` (Darknet's validation threshold 0.005, NMS 0.45) and
    print COCO mAP@[.5:.95], mAP@0.5 and AP per class, computed by pycocotools."""
    from cnnlab.detect.datasets import MixedSizesError, load_detection_data
    from cnnlab.detect.detector import detector_from_checkpoint
    from cnnlab.detect.evaluate import evaluate_detector

    detector = detector_from_checkpoint(run)
    channels, height, width = detector.channels, *detector.net_size
    try:  # in the images' own pixels, as COCO scores them; mixed sizes letterboxed to the input
        dataset = load_detection_data(data)
    except MixedSizesError:
        dataset = load_detection_data(data, size=max(height, width))
    if tuple(detector.names[: detector.classes]) != dataset.classes:
        raise ValueError(
            f"--data {data} has the classes {list(dataset.classes)}, but the detector in {run} "
            f"was trained on {detector.names}: expected data with the same classes"
        )
    folder = evaluation_folder(run, dataset.name, split)
    with output_errors("RUN", folder):
        result = evaluate_detector(
            detector, getattr(dataset, split), dataset.classes, out=folder, batch_size=batch_size
        )
    report = result.as_dict() | {"run": str(run), "data": str(data), "split": split}
    if json_output:
        print_json(report)
        return
    metrics = result.metrics
    out.print(
        f"{run} on {data} ({split}: {metrics.images:,} images, {metrics.objects:,} objects; "
        f"input {width}x{height}x{channels}), score >= {result.thresh}, NMS {result.nms}",
        markup=False,
    )
    out.print(
        f"mAP@[.5:.95] {metrics.map:.4f}   mAP@0.5 {metrics.map50:.4f}   "
        f"mAP@0.75 {metrics.map75:.4f}   (COCO, by pycocotools)",
        markup=False,
    )
    table = WholeTable(title="AP per class", title_justify="left")
    for header in ("class", "name", "AP@[.5:.95]", "AP@0.5"):
        table.add_column(header, justify="left" if header == "name" else "right", no_wrap=True)
    for label, (name, (ap, ap50)) in enumerate(metrics.per_class.items()):
        table.add_row(str(label), escape(name), _ap(ap), _ap(ap50))
    out.print(table)
    out.print(
        f"{metrics.detections:,} detections in {result.seconds:.1f} s "
        f"({result.images_per_second:,.1f} images/s); wrote {result.files['metrics']} and "
        f"{result.files['pr']}",
        markup=False,
    )


def _ap(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
