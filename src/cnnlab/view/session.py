"""What the page looks at: a model opened from a run, an export or the zoo, and its layers.

``open_view`` resolves the source once; ``ViewSession.predict`` answers the top-5 bars while a
student draws, ``ViewSession.forward`` runs the model with hooks and returns every layer's output
(before and after its activation function) and the input of each layer, for the feature maps and
for ``cnnlab.view.trace``. Layer names, shapes and parameter counts are ``cnnlab.summary``'s rows,
so the page and ``cnnlab summary`` agree. No web framework here: the server wraps this module.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data import Dataset, load_dataset
from cnnlab.data.device import preprocess
from cnnlab.deploy import is_export_folder, load_export, read_manifest
from cnnlab.deploy.source import resolve_source
from cnnlab.summary import LayerKind, LayerSummary, layer_kind, summary
from cnnlab.train.predict import Predictor, load

TOP_K = 5


@dataclass(frozen=True)
class LayerRecord:
    """One summary row as called in one forward pass of one image (batch of 1)."""

    row: LayerSummary
    module: nn.Module
    inputs: torch.Tensor  # (C, H, W) or (F,): what the layer read
    before: torch.Tensor  # the layer's own output
    after: torch.Tensor | None  # the folded activation's output, when the row has one
    activation: nn.Module | None

    @property
    def shown(self) -> torch.Tensor:
        """The map the page draws: after the activation function when there is one."""
        return self.before if self.after is None else self.after

    def __repr__(self) -> str:
        folded = "" if self.activation is None else f" + {self.row.activation}"
        return (
            f"LayerRecord({self.row.path!r}, {self.row.module_type}{folded}, "
            f"in={tuple(self.inputs.shape)}, out={tuple(self.before.shape)})"
        )


@dataclass(frozen=True, repr=False)
class ViewSession:
    """A model ready for the page: predictions from ``predictor``, layers from ``layers_model``.

    For a run or a zoo model both are the same PyTorch model. For an export folder the
    predictions come from the export's runtime (what ships) and the layers from the checkpoint
    it was exported from, when that is still on disk and unchanged (else ``layers_note`` says
    why there are no layers).
    """

    source: str
    kind: str  # "run", "export" or "zoo"
    predictor: Predictor
    layers_model: Predictor | None
    layers: tuple[LayerSummary, ...]
    dataset: Dataset | None
    data_note: str | None = None
    layers_note: str | None = None
    # the server answers requests in threads: one forward pass at a time, so that the hooks of
    # one pass never see the layers of another
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __repr__(self) -> str:
        data = self.dataset.name if self.dataset is not None else "no test images"
        return (
            f"ViewSession({self.predictor.model_name!r}, {self.kind} {self.source!r}, "
            f"{len(self.layers)} layers, {data})"
        )

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return self.predictor.data_shape

    def image_tensor(self, pixels: bytes) -> torch.Tensor:
        """Raw uint8 pixels (C*H*W bytes, channel-major) as an image (1, C, H, W)."""
        c, h, w = self.data_shape
        if len(pixels) != c * h * w:
            raise ValueError(
                f"pixels must hold C*H*W = {c}*{h}*{w} = {c * h * w} bytes (uint8, channel by "
                f"channel, row by row). Received: {len(pixels)} bytes"
            )
        return torch.frombuffer(bytearray(pixels), dtype=torch.uint8).view(1, c, h, w)

    def predict(self, pixels: bytes) -> list[tuple[float, str]]:
        """The top classes of one image, as (probability, class name), best first."""
        image = self.image_tensor(pixels)
        with self.lock:
            return self.predictor.top_k(image, TOP_K)[0]

    def forward(self, pixels: bytes) -> list[LayerRecord]:
        """Every layer of one image: its input, its output and its activation's output."""
        if self.layers_model is None:
            raise ValueError(self.layers_note or "this model has no PyTorch layers to show")
        model = self.layers_model.model
        image = self.image_tensor(pixels)
        x = preprocess(image, self.layers_model.normalization, self.layers_model.adapter)
        calls: list[Call] = []

        def record(path: str, module: nn.Module, args: tuple, output: Any) -> None:
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            result = output if isinstance(output, torch.Tensor) else None
            # clones: an in-place activation would change the values after this hook ran
            calls.append(Call(path, module, first, _copy(first), result, _copy(result)))

        with self.lock:
            handles = [
                module.register_forward_hook(lambda m, a, o, p=path: record(p, m, a, o))
                for path, module in model.named_modules()
                if path and _is_summary_layer(module)
            ]
            try:
                with torch.inference_mode():
                    model(x)
            finally:
                for handle in handles:
                    handle.remove()
        return _fold(calls, self.layers)


@dataclass(frozen=True)
class Call:
    """One module call seen by a hook: the tensors themselves (for identity) and copies."""

    path: str
    module: nn.Module
    input_object: torch.Tensor | None
    inputs: torch.Tensor | None
    output_object: torch.Tensor | None
    output: torch.Tensor | None


def _copy(value: torch.Tensor | None) -> torch.Tensor | None:
    return None if value is None else value.detach().clone()


def _is_summary_layer(module: nn.Module) -> bool:
    """The modules ``cnnlab.summary`` makes rows of: leaves, and containers that own
    parameters or buffers directly (custom layers)."""
    return (
        not any(True for _ in module.children())
        or any(True for _ in module.parameters(recurse=False))
        or any(True for _ in module.buffers(recurse=False))
    )


def _fold(calls: list[Call], rows: tuple[LayerSummary, ...]) -> list[LayerRecord]:
    """Pair the calls with the summary's rows: an activation that reads the tensor the previous
    call returned is that row's "after", as the summary folds it."""
    groups: list[tuple[Call, Call | None]] = []
    for index, call in enumerate(calls):
        folds = (
            layer_kind(call.module) is LayerKind.ACTIVATION
            and groups
            and call.input_object is not None
            and call.input_object is calls[index - 1].output_object
        )
        if folds:
            groups[-1] = (groups[-1][0], call)
        else:
            groups.append((call, None))
    if [main.path for main, _ in groups] != [row.path for row in rows]:
        raise ValueError(
            f"the forward pass called the layers {[main.path for main, _ in groups][:8]}, but "
            f"the summary lists {[row.path for row in rows][:8]}: the layers cannot be paired"
        )
    records = []
    for row, (main, folded) in zip(rows, groups, strict=True):
        if main.inputs is None or main.output is None:
            raise ValueError(f"layer {row.path!r} does not read and return one tensor")
        after = None if folded is None or folded.output is None else folded.output[0]
        records.append(
            LayerRecord(
                row=row,
                module=main.module,
                inputs=main.inputs[0],
                before=main.output[0],
                after=after,
                activation=None if folded is None else folded.module,
            )
        )
    return records


def open_view(
    source: str | os.PathLike[str],
    *,
    data: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> ViewSession:
    """Open a run folder or checkpoint, an export folder, or a zoo model by name (its initial
    weights) for the page, with the test images of ``data`` (default: the training data)."""
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir() and is_export_folder(path):
        return _open_export(path, data, data_dir)
    if path.exists():
        predictor = load(path, device="cpu")
        dataset, note = _test_data(predictor, data, data_dir)
        return _session(text, "run", predictor, predictor, dataset, note)
    resolved = resolve_source(text, data=data, data_dir=data_dir)
    note = None if resolved.dataset is not None else "no --data given: no test images"
    untrained = "a zoo model's initial weights, not trained"
    model = resolved.predictor
    return _session(text, "zoo", model, model, resolved.dataset, note, untrained)


def _open_export(folder: Path, data: str | None, data_dir: Any) -> ViewSession:
    exported = load_export(folder)
    manifest = read_manifest(folder)
    layers_model, note = None, None
    origin = manifest.source
    checkpoint = Path(origin.get("path") or "")
    if origin.get("kind") != "run":
        note = "the export was made from a zoo model's initial weights: no checkpoint to show"
    elif not checkpoint.is_file():
        note = f"the checkpoint it was exported from is gone ({checkpoint}): no layers to show"
    elif hashlib.sha256(checkpoint.read_bytes()).hexdigest() != origin.get("checkpoint_sha256"):
        note = f"{checkpoint} changed since the export: its layers are not the export's"
    else:
        layers_model = load(checkpoint, device="cpu")
    dataset, data_note = _test_data(exported.predictor, data, data_dir)
    return _session(
        str(folder), "export", exported.predictor, layers_model, dataset, data_note, note
    )


def _session(
    source: str,
    kind: str,
    predictor: Predictor,
    layers_model: Predictor | None,
    dataset: Dataset | None,
    data_note: str | None,
    layers_note: str | None = None,
) -> ViewSession:
    rows: tuple[LayerSummary, ...] = ()
    if layers_model is not None:
        rows = summary(layers_model.model, layers_model.adapter.model_shape).layers
    return ViewSession(source, kind, predictor, layers_model, rows, dataset, data_note, layers_note)


def _test_data(
    predictor: Predictor, data: str | None, data_dir: Any
) -> tuple[Dataset | None, str | None]:
    """The test images to pick from: ``data`` (an error when it does not fit the model), or
    the training data when it is at hand (else a note saying how to get it)."""
    name = data or predictor.data_name
    if not name:
        return None, "the model does not name its training data and no --data was given"
    try:
        dataset = load_dataset(name, data_dir=data_dir, download=data is not None)
    except (ValueError, OSError) as error:
        if data is not None:
            raise
        reason = " ".join(str(error).split())
        return None, f"no test images: {name} is not at hand ({reason}); cnnlab data fetch {name}"
    if tuple(dataset.classes) != predictor.classes:
        raise ValueError(
            f"data={name!r} has the classes {list(dataset.classes)[:6]}, but the model was "
            f"trained on {predictor.data_name!r} with {list(predictor.classes)[:6]}: expected a "
            "dataset with the same classes"
        )
    shape = tuple(int(v) for v in dataset.test_images.shape[1:])
    if shape != predictor.data_shape:
        raise ValueError(
            f"data={name!r} has images of shape {shape}, but the model was trained on "
            f"{predictor.data_shape}: expected the same shape"
        )
    return dataset, None
