"""Model submissions: a team's exported ONNX model, run by the server on its secret test set.

A team uploads what ``cnnlab export RUN --format onnx`` wrote: the model file and its
``model.json``. Of ``model.json`` the server reads only how images become the model's input
(``preprocessing``: data_shape, mean, std; ``model.input_shape``) and the class names; it turns
the secret uint8 images into that input itself, with the very ``preprocess`` that ``load_export``
and training use, so a team that runs its export on the same images gets the same predictions.

The model runs in its own process (``model_worker.py``: ONNX Runtime's CPU session, no pickles,
no user code), whose address space, CPU time and threads are capped and which is killed at the
wall-time limit; the server measures the inference time there (``session.run`` alone, after one
untimed warm-up batch) and the model's size (its file's bytes). A model over a limit, or whose
input or output has the wrong shape, is refused with ``ModelRefused``: one line, and nothing is
recorded, so it does not use the day's quota.

The limits (``ModelLimits``) are the competition's rules: fixed at ``quest init``, stored in the
database and shown on the page.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.runtime.formatting import format_si
from cnnlab.runtime.validate import check_int, check_number

if TYPE_CHECKING:  # torch is imported by a model submission, not by the server's other routes
    import torch

    from cnnlab.data.device import Normalization

WORKER = Path(__file__).with_name("model_worker.py")
MB = 1_000_000
MAX_SIDE = 1024  # the largest model input height or width the server prepares images for
BATCH_BYTES = 64 * MB  # float32 model input per batch sent to the worker, at most
MAX_MANIFEST_BYTES = 256_000  # model.json (a few KB; its verification block grows with int8)
MANIFEST_FORMAT = "cnnlab-export"  # what cnnlab.deploy.manifest writes
WORKER_START_S = 120.0  # for Python, NumPy and ONNX Runtime to start, before the time limit


def require_onnxruntime() -> None:
    """Model quests run ONNX Runtime on the server (in the worker process): refuse at once
    without it, naming the install."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise ValueError(
            "model submissions need ONNX Runtime on the server, which is not installed: "
            "expected pip install 'cnnlab[quest]' (or 'cnnlab[deploy]')"
        )


class ModelRefused(ValueError):
    """The model was not scored: over a limit, a wrong shape, or not a model. One line."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ModelLimits:
    """What the server grants one model submission (the competition's rules, set at init)."""

    max_model_mb: float = 20.0  # the ONNX file (weights included), in MB of 10^6 bytes
    max_model_seconds: float = 120.0  # wall time to load the model and run the whole secret set
    max_model_memory_mb: int = 2000  # address space of the scoring process (~300 MB of it is
    # Python, NumPy and ONNX Runtime themselves)
    model_threads: int = 1  # ONNX Runtime's intra-op threads: inference times comparable
    batch_size: int = 64  # images per session.run (a model with a fixed batch keeps its own)
    parallel_runs: int = 1  # models scored at once; others wait (up to max_model_seconds)

    def __post_init__(self) -> None:
        check_number(
            "max_model_mb",
            self.max_model_mb,
            0,
            2001,
            "a size in MB above 0, to 2000",
            open_low=True,
        )
        check_number(
            "max_model_seconds", self.max_model_seconds, 1, 3601, "a time from 1 to 3600 seconds"
        )
        check_int("max_model_memory_mb", self.max_model_memory_mb, low=500, high=1_000_000)
        check_int("model_threads", self.model_threads, low=1, high=256)
        check_int("batch_size", self.batch_size, low=1, high=65536)
        check_int("parallel_runs", self.parallel_runs, low=1, high=256)

    @property
    def max_model_bytes(self) -> int:
        return int(self.max_model_mb * MB)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelLimits:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    def describe(self) -> str:
        threads = "1 thread" if self.model_threads == 1 else f"{self.model_threads} threads"
        return (
            f"models up to {self.max_model_mb:g} MB, {self.max_model_seconds:g} s and "
            f"{self.max_model_memory_mb:,} MB of memory per run, {threads}, "
            f"batches of {self.batch_size}"
        )


@dataclass(frozen=True)
class SubmittedModel:
    """What ``model.json`` says about feeding the model, checked against the quest."""

    name: str  # the zoo name, e.g. "lenet-like"
    precision: str  # "fp32" or "int8"
    model_shape: tuple[int, int, int]  # the network's input (C', H', W')
    normalization: Normalization
    class_map: tuple[int, ...] | None  # model output column -> quest class; None: the same

    @property
    def description(self) -> str:
        return f"{self.name} (onnx {self.precision})"


@dataclass(frozen=True, repr=False)
class ModelRun:
    """One scored run: the predictions and what the server measured."""

    predictions: np.ndarray  # (N,) quest class indices, in test-id order
    inference_ms: float  # session.run time per image, in milliseconds
    model_bytes: int
    sha256: str
    batch_size: int
    threads: int

    def __repr__(self) -> str:
        return (
            f"ModelRun({self.predictions.size} images, {self.inference_ms:.4f} ms/image, "
            f"{self.model_bytes:,} bytes, batch {self.batch_size}, {self.threads} thread(s))"
        )


def read_submitted_manifest(
    data: bytes, *, image_shape: tuple[int, int, int], classes: tuple[str, ...]
) -> SubmittedModel:
    """Check an uploaded ``model.json`` against the quest's images and classes."""
    from cnnlab.data.device import InputAdapter, Normalization

    if len(data) > MAX_MANIFEST_BYTES:
        raise ModelRefused(f"model.json is {len(data):,} bytes; at most {MAX_MANIFEST_BYTES:,}")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelRefused(f"model.json is not JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelRefused(
            "model.json is not a cnnlab export description: expected the model.json that "
            "`cnnlab export RUN --format onnx` writes"
        )
    if manifest.get("runtime") != "onnx":
        raise ModelRefused(
            f"the export is for {_short(manifest.get('runtime'))}; the server runs ONNX "
            "models only: export with `cnnlab export RUN --format onnx`"
        )
    preprocessing = _dict(manifest, "preprocessing")
    model = _dict(manifest, "model")
    data_shape = _shape(preprocessing.get("data_shape"), "preprocessing.data_shape")
    if data_shape != tuple(image_shape):
        c, h, w = image_shape
        raise ModelRefused(
            f"the model was trained on {_hwc(data_shape)} images; this quest's images are "
            f"{h}x{w}x{c}: train on data of the quest's shape"
        )
    model_shape = _shape(model.get("input_shape"), "model.input_shape")
    if max(model_shape[1:]) > MAX_SIDE:
        raise ModelRefused(
            f"the model's input is {_hwc(model_shape)}; the server prepares inputs up to "
            f"{MAX_SIDE}x{MAX_SIDE}"
        )
    try:
        normalization = Normalization(
            _numbers(preprocessing.get("mean"), "preprocessing.mean", data_shape[0]),
            _numbers(preprocessing.get("std"), "preprocessing.std", data_shape[0]),
        )
        InputAdapter(data_shape, model_shape)
    except ValueError as error:
        raise ModelRefused(f"model.json: {error}") from None
    names = manifest.get("classes")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelRefused("model.json: classes must be a list of class names")
    if len(names) != len(classes):
        raise ModelRefused(
            f"the model has {len(names)} classes; this quest has {len(classes)} "
            f"({_listing(classes)})"
        )
    class_map = None
    if tuple(names) != tuple(classes) and sorted(names) == sorted(classes):
        class_map = tuple(classes.index(name) for name in names)  # same names, another order
    name, precision = model.get("name"), manifest.get("precision")
    return SubmittedModel(
        name=_short(name) if isinstance(name, str) and name else "model",
        precision=precision if precision in ("fp32", "int8") else "fp32",
        model_shape=model_shape,
        normalization=normalization,
        class_map=class_map,
    )


def check_model_size(size: int, limits: ModelLimits) -> None:
    """Refuse a model file over ``limits.max_model_mb`` (413: too large)."""
    if size > limits.max_model_bytes:
        raise ModelRefused(
            f"the model file is {format_si(size)}B; this quest accepts models up to "
            f"{limits.max_model_mb:g} MB",
            status=413,
        )


def run_model(
    model: bytes,
    submitted: SubmittedModel,
    images: torch.Tensor,
    limits: ModelLimits,
    *,
    num_classes: int,
) -> ModelRun:
    """Run ``model`` on ``images`` (uint8 (N, C, H, W), the secret set) under ``limits``."""
    from cnnlab.data.device import InputAdapter, preprocess

    check_model_size(len(model), limits)
    adapter = InputAdapter(tuple(images.shape[1:]), submitted.model_shape)
    c, h, w = submitted.model_shape
    per_image = 4 * c * h * w
    with tempfile.TemporaryDirectory(prefix="cnnlab-quest-model-") as folder:
        file = Path(folder) / "model.onnx"
        file.write_bytes(model)
        empty = Path(folder) / "run"
        empty.mkdir()
        with _Worker(file, empty, submitted.model_shape, num_classes, limits) as worker:
            batch = worker.fixed_batch or max(1, min(limits.batch_size, BATCH_BYTES // per_image))
            if batch * per_image > max(BATCH_BYTES, per_image):
                raise ModelRefused(
                    f"the model takes a fixed batch of {batch:,} images, over the "
                    f"{BATCH_BYTES // MB} MB of input the server prepares at once: export it "
                    "with a dynamic batch (cnnlab export does)"
                )
            predictions, seconds = [], 0.0
            for start in range(0, images.shape[0], batch):
                chunk = images[start : start + batch]
                inputs = preprocess(chunk, submitted.normalization, adapter).numpy()
                if worker.fixed_batch and len(chunk) < batch:  # pad the last batch, drop after
                    inputs = np.concatenate(
                        [inputs, np.zeros((batch - len(chunk), c, h, w), np.float32)]
                    )
                labels, took = worker.run(np.ascontiguousarray(inputs, dtype=np.float32))
                predictions.append(labels[: len(chunk)])
                seconds += took
    predicted = np.concatenate(predictions).astype(np.int64)
    if submitted.class_map is not None:
        predicted = np.asarray(submitted.class_map, dtype=np.int64)[predicted]
    return ModelRun(
        predictions=predicted,
        inference_ms=1000 * seconds / max(images.shape[0], 1),
        model_bytes=len(model),
        sha256=hashlib.sha256(model).hexdigest(),
        batch_size=batch,
        threads=limits.model_threads,
    )


class _Worker:
    """``model_worker.py`` in its own process, killed at the wall-time limit."""

    def __init__(
        self,
        file: Path,
        folder: Path,
        shape: tuple[int, int, int],
        num_classes: int,
        limits: ModelLimits,
    ) -> None:
        self.limits = limits
        config = {
            "model": str(file),
            "memory_bytes": limits.max_model_memory_mb * MB,
            "cpu_seconds": math.ceil(limits.max_model_seconds * limits.model_threads) + 5,
            "threads": limits.model_threads,
            "input_shape": list(shape),
            "num_classes": num_classes,
        }
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=folder,
            env=worker_environment(limits.model_threads),
        )
        self.timed_out = threading.Event()
        self.timer = self._start_timer(WORKER_START_S)
        self.fixed_batch: int | None = None

    def _start_timer(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self._kill)
        timer.daemon = True
        timer.start()
        return timer

    def __enter__(self) -> _Worker:
        try:
            self._reply()  # started: the model's time counts from now
            self.timer.cancel()
            self.timer = self._start_timer(self.limits.max_model_seconds)
            self.fixed_batch = self._reply().get("batch")  # once the model is loaded and checked
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.timer.cancel()
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # end of input: the worker exits
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._kill()
        self.process.wait()
        self.process.stdout.close()
        self.stderr.close()

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.timed_out.set()
            self.process.kill()

    def run(self, inputs: np.ndarray) -> tuple[np.ndarray, float]:
        try:
            self.process.stdin.write(struct.pack("<Q", inputs.shape[0]) + inputs.tobytes())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._failed()
        answer = self._reply()
        return np.asarray(answer["predictions"], dtype=np.int64), float(answer["seconds"])

    def _reply(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            self._failed()
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            raise ModelRefused("the model's run answered something unreadable") from None
        if "error" in answer:
            self.process.wait()
            raise ModelRefused(self._explain(answer["kind"], answer["error"]))
        return answer

    def _failed(self) -> None:
        code = self.process.wait()
        if self.timed_out.is_set() or code == -signal.SIGXCPU:
            raise ModelRefused(
                f"the model did not finish the test set within the quest's limit of "
                f"{self.limits.max_model_seconds:g} s ({self.limits.model_threads} thread(s))"
            )
        if code == -signal.SIGKILL:  # not by us: the kernel's out-of-memory killer
            raise ModelRefused(self._explain("memory", "the process was killed"))
        self.stderr.seek(0)
        tail = self.stderr.read()[-300:].decode(errors="replace").strip().splitlines()
        reason = f"signal {-code}" if code < 0 else f"exit status {code}"
        detail = f": {tail[-1]}" if tail else ""
        raise ModelRefused(f"the model's run stopped ({reason}){detail}")

    def _explain(self, kind: str, error: str) -> str:
        if kind == "memory":
            return (
                f"the model needs more memory than the quest's limit of "
                f"{self.limits.max_model_memory_mb:,} MB ({error})"
            )
        return error


def worker_environment(threads: int) -> dict[str, str]:
    """PATH and the locale, thread counts pinned; none of the server's own variables (a
    PostgreSQL password in CNNLAB_QUEST_DB stays out of the model's process)."""
    environment = {
        key: os.environ[key] for key in ("PATH", "LANG", "LD_LIBRARY_PATH") if key in os.environ
    }
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        environment[key] = str(threads)
    return environment


def _dict(manifest: dict, key: str) -> dict:
    value = manifest.get(key)
    if not isinstance(value, dict):
        raise ModelRefused(f"model.json: {key} must be an object, as cnnlab export writes it")
    return value


def _shape(value: object, key: str) -> tuple[int, int, int]:
    ok = (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    )
    if not ok:
        raise ModelRefused(f"model.json: {key} must be [C, H, W]. Received: {_short(value)}")
    return tuple(value)  # type: ignore[return-value]


def _numbers(value: object, key: str, count: int) -> tuple[float, ...]:
    ok = (
        isinstance(value, list)
        and len(value) == count
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    )
    if not ok:
        raise ModelRefused(
            f"model.json: {key} must be {count} finite number(s), one per image channel. "
            f"Received: {_short(value)}"
        )
    return tuple(float(v) for v in value)


def _hwc(shape: tuple[int, int, int]) -> str:
    c, h, w = shape
    return f"{h}x{w}x{c}"


def _listing(classes: tuple[str, ...], limit: int = 5) -> str:
    shown = ", ".join(classes[:limit])
    return shown + (", ..." if len(classes) > limit else "")


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + "..."
