"""``bench_infer(config)``: one model on every runtime, measured side by side on this machine.

Each backend is exported (``export_model``, so every file was checked against PyTorch), then
each (backend, precision, batch) is timed on the same preprocessed real test images: a few
warm-up runs, then repeats for ``budget_seconds`` (at least ``min_repeats``), every run timed
alone; p50 and p99 are percentiles of those times. Only the network runs inside the clock: the
preprocessing is the same for every backend. Accuracy is each model's on the same test images;
its change and the speed-up are against PyTorch eager fp32 (speed-up at the same batch). The
real-time verdict compares p99 with ``deadline_ms``, per batch (a batch's answer arrives when
its last image is done). Energy comes from ``EnergyMeter`` (RAPL) where this machine allows.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.bench.energy import EnergyMeter
from cnnlab.deploy.export import ExportConfig, export_model
from cnnlab.deploy.runtimes import RuntimeModule, load_export
from cnnlab.deploy.source import ExportSource, resolve_source, sample_images
from cnnlab.runtime.contention import CpuCounters, busy_note, others_cpu_share
from cnnlab.runtime.context import software_context
from cnnlab.runtime.devices import cpu_name
from cnnlab.runtime.files import default_output_dir, write_json
from cnnlab.runtime.threads import torch_threads
from cnnlab.runtime.validate import check_bool, check_choice, distinct_positive_ints
from cnnlab.train.evaluate import evaluate_model

PrintFn = Callable[[str], None]
INFER_JSON = "infer.json"
INFER_PNG = "infer.png"
INFER_FORMAT = "cnnlab-bench-infer"


class InferBackend(str, Enum):
    torch = "torch"  # PyTorch eager, fp32: the reference
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    tflite = "tflite"


_EXPORT_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino", "tflite": "tflite"}


@dataclass(frozen=True)
class InferBenchConfig:
    """What to measure: a run or zoo model on some backends, precisions and batch sizes."""

    source: str  # a run folder, a checkpoint, or a zoo model name
    backends: tuple[str, ...] = ("torch", "onnxruntime")
    int8: bool = False  # also measure each runtime's int8 model
    batches: tuple[int, ...] = (1, 64)
    data: str | None = None  # default: the run's own dataset; a zoo model: random images
    data_dir: str | None = None
    eval_images: int = 1000  # test images behind each accuracy
    calibration: int = 256
    deadline_ms: float = 1000 / 30  # 30 frames per second
    threads: int | None = None  # every backend gets the same; None = torch's current
    budget_seconds: float = 2.0  # timed repeats per measurement
    min_repeats: int = 5
    warmup: int = 3
    out: str | None = None  # None = runs/bench-infer-<model>-<time>

    def __post_init__(self) -> None:
        for name in ("out", "data_dir"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        backends = (self.backends,) if isinstance(self.backends, str) else tuple(self.backends)
        if not backends:
            raise ValueError("backends must name at least one backend. Received: backends=()")
        checked = tuple(check_choice("backends", b, InferBackend) for b in backends)
        object.__setattr__(self, "backends", tuple(dict.fromkeys(("torch", *checked))))
        object.__setattr__(self, "batches", distinct_positive_ints("batches", self.batches))
        check_bool("int8", self.int8)
        for name in ("eval_images", "calibration", "min_repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0. Received: warmup={self.warmup!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ValueError(f"threads must be a positive integer. Received: {self.threads!r}")
        for name in ("deadline_ms", "budget_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")


@dataclass(frozen=True)
class InferRow:
    """One (backend, precision, batch) measured."""

    backend: str
    precision: str
    batch: int
    repeats: int
    p50_ms: float
    p99_ms: float
    images_per_second: float
    file_bytes: int | None  # None for PyTorch eager (no file shipped)
    accuracy: float | None
    accuracy_change: float | None  # against PyTorch eager fp32, in [-1, 1]
    speedup: float  # PyTorch eager fp32's p50 / this p50, at the same batch
    meets_deadline: bool  # p99 <= deadline_ms
    joules_per_image: float | None
    energy_note: str | None = None  # why no joules

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True, repr=False)
class InferBenchResult:
    config: InferBenchConfig
    model: str
    data: str
    rows: tuple[InferRow, ...]
    context: dict[str, Any]
    folder: Path
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": INFER_FORMAT,
            "version": 1,
            "model": self.model,
            "data": self.data,
            "deadline_ms": self.config.deadline_ms,
            "batches": list(self.config.batches),
            "rows": [row.to_dict() for row in self.rows],
            "speedups": speedup_summary(self),
            "context": self.context,
            "files": self.files,
        }

    def best(self, batch: int, precision: str | None = None) -> InferRow:
        """The fastest row at ``batch`` (of ``precision``)."""
        rows = [r for r in self.rows if r.batch == batch and precision in (None, r.precision)]
        return min(rows, key=lambda r: r.p50_ms)

    def __repr__(self) -> str:
        return f"InferBenchResult({self.model!r}, {len(self.rows)} rows, {str(self.folder)!r})"


def bench_infer(config: InferBenchConfig, *, print_fn: PrintFn | None = None) -> InferBenchResult:
    """Export to every backend asked for, then time, score and meter each; write JSON and PNG."""
    say = print_fn or (lambda _: None)
    source = resolve_source(config.source, data=config.data, data_dir=config.data_dir)
    model_name = source.predictor.model_name
    folder = Path(config.out) if config.out else default_output_dir(f"bench-infer-{model_name}")
    folder.mkdir(parents=True, exist_ok=True)
    count = max(config.batches)
    images = sample_images(source, max(count, config.eval_images))
    inputs = source.model_input(images[:count]).numpy()  # (max batch, C', H', W')
    rows: list[InferRow] = []
    threads = config.threads or torch.get_num_threads()
    counters = CpuCounters.read()
    with torch_threads(threads):
        exports = _exports(config, source, folder, say)  # every file written and checked first
        model = source.predictor.model

        def eager(x: np.ndarray) -> Any:
            with torch.inference_mode():
                return model(torch.from_numpy(x))

        base = _accuracy(source, model, config)
        reference: dict[int, float] = {}
        measured = [("torch", "fp32", None, None, None), *exports]
        for backend, precision, fixed, export_folder, size in measured:
            # One session alive at a time: an idle runtime's spinning threads would slow the
            # one being timed.
            if export_folder is None:
                module, run = model, eager
            else:
                loaded = load_export(export_folder, precision=precision, threads=threads)
                module, run = RuntimeModule(loaded.backend), loaded.backend.run
            accuracy = base if export_folder is None else _accuracy(source, module, config)
            for batch in config.batches if fixed is None else (fixed,):
                say(f"timing {backend} {precision} batch {batch} ...")
                times, (joules, note) = _time(run, inputs[:batch], config)
                p50, p99 = (float(np.percentile(times, q)) * 1000 for q in (50, 99))
                reference.setdefault(batch, p50)  # PyTorch eager is measured first
                rows.append(
                    InferRow(
                        backend=backend,
                        precision=precision,
                        batch=batch,
                        repeats=len(times),
                        p50_ms=p50,
                        p99_ms=p99,
                        images_per_second=batch / (p50 / 1000),
                        file_bytes=size,
                        accuracy=accuracy,
                        accuracy_change=None
                        if accuracy is None or base is None
                        else accuracy - base,
                        speedup=reference[batch] / p50,
                        meets_deadline=p99 <= config.deadline_ms,
                        joules_per_image=None if joules is None else joules / batch / len(times),
                        energy_note=note,
                    )
                )
            del module, run
            gc.collect()
    share = others_cpu_share(counters, CpuCounters.read())
    context = {
        **software_context(),
        "others_cpu_share": share,  # the CPU time other processes took while this ran
        "busy_note": busy_note(share),
        "cpu": cpu_name(),
        "threads": threads,
        "exporters": _versions(),
    }
    data = f"{source.dataset.name} test" if source.dataset is not None else "random images"
    result = InferBenchResult(config, model_name, data, tuple(rows), context, folder)
    files = {"json": str(folder / INFER_JSON)}
    if any(row.accuracy is not None for row in rows):
        files["png"] = str(plot_infer(result, folder / INFER_PNG))
    result = InferBenchResult(config, model_name, data, tuple(rows), context, folder, files)
    write_json(folder / INFER_JSON, result.to_dict())
    return result


def _exports(
    config: InferBenchConfig, source: ExportSource, folder: Path, say: PrintFn
) -> list[tuple[str, str, int | None, Path, int]]:
    """Export to each runtime: (backend, precision, fixed batch or None, folder, file bytes).

    TFLite's batch is fixed at conversion: one export per batch size."""
    exports = []
    for backend in config.backends[1:]:
        fmt = _EXPORT_FORMAT[backend]
        fixed = config.batches if fmt == "tflite" else (None,)
        for batch in fixed:
            name = fmt if batch is None else f"{fmt}-batch{batch}"
            say(f"exporting to {name} ...")
            export = export_model(
                ExportConfig(
                    config.source,
                    format=fmt,
                    int8=config.int8,
                    calibration=config.calibration,
                    out=str(folder / "exports" / name),
                    data=config.data,
                    data_dir=config.data_dir,
                    verify_images=min(64, config.eval_images),
                    eval_images=min(64, config.eval_images),
                    tflite_batch=batch or 1,
                )
            )
            for precision, entry in export.manifest.files.items():
                exports.append((backend, precision, batch, export.folder, int(entry["bytes"])))
    return exports


def _time(run: Callable[[np.ndarray], Any], x: np.ndarray, config: InferBenchConfig) -> Any:
    """Per-run seconds (warm-up excluded) and (joules over the timed runs or None, why not)."""
    for _ in range(config.warmup):
        run(x)
    meter = EnergyMeter("cpu").start()
    times: list[float] = []
    deadline = time.perf_counter() + config.budget_seconds
    while len(times) < config.min_repeats or time.perf_counter() < deadline:
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
        if len(times) >= 10_000:
            break
    report = meter.stop()
    joules = report.joules()
    note = None if joules is not None else "; ".join(report.reasons()) or "no energy counter"
    return np.asarray(times), (joules, note)


def _accuracy(
    source: ExportSource, module: torch.nn.Module, config: InferBenchConfig
) -> float | None:
    if source.dataset is None:
        return None
    predictor = source.predictor
    count = min(config.eval_images, int(source.dataset.test_labels.shape[0]))
    return evaluate_model(
        module,
        source.dataset.test_images[:count],
        source.dataset.test_labels[:count],
        normalization=predictor.normalization,
        adapter=predictor.adapter,
        device="cpu",
        num_classes=len(predictor.classes),
        batch_size=64,
    ).accuracy


def _versions() -> dict[str, str | None]:
    from cnnlab.deploy.extras import versions

    return versions("onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert")


def plot_infer(result: InferBenchResult, path: Path) -> Path:
    """Latency (p50, log scale) against test accuracy, one marker per backend and precision."""
    from cnnlab.runtime.figures import new_figure, save_png

    figure = new_figure((7.5, 4.5))
    axes = figure.add_subplot()
    markers = {1: "o", max(result.config.batches): "s"}
    for row in result.rows:
        if row.accuracy is None:
            continue
        label = f"{row.backend} {row.precision} b{row.batch}"
        axes.scatter(row.p50_ms, 100 * row.accuracy, marker=markers.get(row.batch, "^"))
        axes.annotate(
            label,
            (row.p50_ms, 100 * row.accuracy),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    if result.config.deadline_ms:
        axes.axvline(result.config.deadline_ms, color="grey", linestyle="--", linewidth=1)
        axes.text(
            result.config.deadline_ms,
            axes.get_ylim()[0],
            " deadline",
            fontsize=7,
            color="grey",
            va="bottom",
        )
    axes.set_xscale("log")
    axes.set_xlabel("p50 latency per batch (ms, log scale)")
    axes.set_ylabel(f"accuracy on {result.data} (%)")
    axes.set_title(f"{result.model}: inference latency against accuracy", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    return save_png(figure, path)


def speedup_summary(result: InferBenchResult) -> dict[str, float]:
    """The issue's targets: best int8 and best fp32 speed-up over eager at each batch."""
    summary = {}
    for batch in result.config.batches:
        for precision in ("fp32", "int8"):
            rows = [r for r in result.rows if r.batch == batch and r.precision == precision]
            rows = [r for r in rows if r.backend != "torch"]
            if rows:
                summary[f"best_{precision}_speedup_batch{batch}"] = max(r.speedup for r in rows)
    return summary
