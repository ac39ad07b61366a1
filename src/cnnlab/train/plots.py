"""The pictures of a training run: learning curves, the confusion matrix, what the network learned.

``plot_curves`` and ``plot_confusion`` draw a run's numbers; ``plot_kernels`` shows the first
layer's learned kernels (or, for an MLP, its first dense layer as image "templates") and
``plot_features`` sends one image through every convolution, the lecture's "Low-, Mid-, and
High-Level Feature Extraction" picture. Each is drawn with matplotlib's object API on the Agg
canvas (no pyplot, no global state) and written atomically: a temp file in the same folder,
then a rename, so an interrupted run never leaves a half-written PNG. Each returns the path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.models.lenet import ConnectionTableConv2d
from cnnlab.runtime.figures import new_figure, png_path, save_png
from cnnlab.runtime.formatting import format_grouped
from cnnlab.summary import LayerKind, layer_kind

TILE_IN = 1.15  # inches per kernel or feature-map tile
CONV_TYPES = (nn.Conv2d, ConnectionTableConv2d)
DENSE_TEMPLATES = 16  # MLP units shown by plot_kernels: the classic 4x4 "templates" picture
CURVE_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


# What plot_curves can draw on the right: the record key's suffix, its name, the loss's name.
CURVE_METRICS = {
    "accuracy": ("accuracy", "cross-entropy"),
    "map50": ("mAP@0.5", "YOLO loss"),  # a detector's run; test_map (mAP@[.5:.95]) dashed
}


def plot_curves(
    metrics: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    metric: str = "accuracy",
) -> Path:
    """Loss and accuracy per epoch, side by side: train loss; train, val and test accuracy in %.

    ``metrics`` is the trainer's list of per-epoch dicts (``epoch``, ``loss`` and any of
    ``train_accuracy``, ``val_accuracy``, ``test_accuracy`` as fractions); a missing or ``None``
    accuracy is left out. The last test accuracy is written in the lower right, with an arrow.
    ``metric="map50"`` draws a detector's ``test_map50`` instead (and its ``test_map``).
    """
    if metric not in CURVE_METRICS:
        raise ValueError(
            f"metric must be one of {', '.join(CURVE_METRICS)}. Received: metric={metric!r}"
        )
    name, loss_name = CURVE_METRICS[metric]
    from matplotlib.ticker import FuncFormatter, MaxNLocator  # lazily, as in _figure

    out = png_path(path)
    if isinstance(metrics, (str, bytes, Mapping)) or not isinstance(metrics, Sequence):
        raise ValueError(f"metrics must be a list of per-epoch dicts. Received: {metrics!r:.80}")
    if not metrics:
        raise ValueError("metrics must hold at least one epoch. Received: metrics=[]")
    for i, row in enumerate(metrics):
        if not isinstance(row, Mapping) or "epoch" not in row or "loss" not in row:
            raise ValueError(
                f"metrics[{i}] must be a dict with 'epoch' and 'loss'. Received: {row!r:.80}"
            )
    epochs = [row["epoch"] for row in metrics]
    loss = [_number(row["loss"]) for row in metrics]
    accuracy = {
        split: [_number(row.get(f"{split}_{metric}")) for row in metrics] for split in CURVE_COLOURS
    }
    accuracy = {k: v for k, v in accuracy.items() if any(not math.isnan(a) for a in v)}

    figure = new_figure((10.5, 4.2))
    loss_ax, acc_ax = figure.subplots(1, 2)
    loss_ax.plot(epochs, loss, marker="o", ms=3, color=CURVE_COLOURS["train"], label="train")
    loss_ax.set(title="loss", xlabel="epoch", ylabel=loss_name)
    for split, values in accuracy.items():
        percent = [100 * a for a in values]
        label = split if metric == "accuracy" else f"{split} {name}"
        acc_ax.plot(epochs, percent, marker="o", ms=3, color=CURVE_COLOURS[split], label=label)
    strict = [_number(row.get("test_map")) for row in metrics] if metric == "map50" else []
    if any(not math.isnan(a) for a in strict):
        acc_ax.plot(
            epochs, [100 * a for a in strict], marker="o", ms=3, ls="--",
            color=CURVE_COLOURS["test"], label="test mAP@[.5:.95]",
        )  # fmt: skip
    acc_ax.set(title=name, xlabel="epoch", ylabel=name)
    tests = zip(epochs, accuracy.get("test", []), strict=False)
    final = [(e, a) for e, a in tests if not math.isnan(a)]
    if final:
        epoch, value = final[-1]
        acc_ax.annotate(
            f"final test {name} {100 * value:.2f}%",
            xy=(epoch, 100 * value),
            xytext=(0.97, 0.05),
            textcoords="axes fraction",
            ha="right",
            va="bottom",
            fontsize=9,
            color=CURVE_COLOURS["test"],
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": CURVE_COLOURS["test"]},
            arrowprops={"arrowstyle": "->", "color": CURVE_COLOURS["test"], "lw": 0.8},
        )
    acc_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", frameon=False)
    if title:
        figure.suptitle(title)
    return save_png(figure, out)


def plot_confusion(
    confusion: np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """The confusion matrix as a heatmap of row percentages (rows = true class), with counts.

    Small matrices print "percent / count" in every non-empty cell; the title gives the overall
    accuracy (the diagonal over all samples).
    """
    out = png_path(path)
    matrix = np.asarray(confusion)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(
            f"confusion must be a square (K, K) matrix. Received: shape={matrix.shape}"
        )
    if not np.issubdtype(matrix.dtype, np.number) or not np.all(np.isfinite(matrix)):
        raise ValueError("confusion must hold finite counts. Received: non-numeric or NaN values")
    if (matrix < 0).any() or matrix.sum() <= 0:
        raise ValueError("confusion must hold non-negative counts, at least one sample")
    names = [str(c) for c in classes] if not isinstance(classes, str) else []
    if len(names) != matrix.shape[0]:
        raise ValueError(
            f"classes must name the {matrix.shape[0]} rows of confusion. "
            f"Received: {len(names)} classes"
        )
    k = matrix.shape[0]
    totals = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(100.0 * matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    accuracy = 100.0 * np.trace(matrix) / matrix.sum()

    side = min(max(5.5, 0.62 * k + 2.5), 18.0)
    figure = new_figure((side + 1.0, side))
    ax = figure.subplots()
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
    bar = figure.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label("% of the true class (row)")
    label_size = 9 if k <= 20 else 7 if k <= 40 else 5
    ax.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), names)
    ax.tick_params(labelsize=label_size)
    if k > 60:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set(xlabel="predicted class", ylabel="true class")
    if k <= 30:
        with_counts = k <= 15
        for (row, col), value in np.ndenumerate(percent):
            if matrix[row, col] == 0:
                continue
            text = "100%" if value == 100 else "<0.1%" if value < 0.1 else f"{value:.1f}%"
            if with_counts:
                text += f"\n{format_grouped(matrix[row, col])}"
            ax.text(
                col,
                row,
                text,
                ha="center",
                va="center",
                fontsize=7 if with_counts else 6,
                color="white" if value > 55 else "black",
            )
    samples = format_grouped(matrix.sum())
    heading = f"accuracy {accuracy:.2f}% ({samples} samples)"
    ax.set_title(f"{title}\n{heading}" if title else heading)
    return save_png(figure, out)


@dataclass(frozen=True)
class KernelTiles:
    """The first learned layer as pictures: what ``plot_kernels`` draws."""

    kind: LayerKind  # CONV: one tile per output filter; DENSE: one template per unit (MLPs)
    layer: str  # the module's qualified name, e.g. "0"
    tiles: np.ndarray  # (n, kH, kW) one channel, or (n, kH, kW, 3) for RGB kernels
    total: int  # how many filters (or units) the layer has; tiles may show the first few
    channels: int  # input channels of a kernel, or of the image a dense template is shaped as

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.tiles.shape[1:]))
        return f"KernelTiles({self.kind.value}, layer={self.layer!r}, {len(self.tiles)} x {shape})"


def first_layer_kernels(model: nn.Module, *, max_tiles: int = 64) -> KernelTiles:
    """The first convolution's kernels, or the first dense layer's weights shaped as images.

    A 3-channel kernel stays RGB; other kernels are averaged over their input channels. An MLP
    without convolutions shows its first ``DENSE_TEMPLATES`` units, each unit's weights reshaped
    to the model's input image (``model.cnnlab.input_shape``), the classic MLP "templates".
    """
    if not isinstance(max_tiles, int) or max_tiles < 1:
        raise ValueError(f"max_tiles must be a positive integer. Received: max_tiles={max_tiles!r}")
    modules = list(model.named_modules())
    conv = next(((n, m) for n, m in modules if isinstance(m, CONV_TYPES)), None)
    if conv is not None:
        name, module = conv
        weight = _conv_weight(module)  # (out, in, kH, kW)
        shown = weight[:max_tiles]
        tiles = shown.permute(0, 2, 3, 1) if weight.shape[1] == 3 else shown.mean(dim=1)
        return KernelTiles(LayerKind.CONV, name, tiles.numpy(), weight.shape[0], weight.shape[1])
    dense = next(((n, m) for n, m in modules if isinstance(m, nn.Linear)), None)
    if dense is None:
        raise ValueError(
            f"model ({type(model).__name__}) has no Conv2d or Linear layer: no kernels to plot"
        )
    name, module = dense
    weight = module.weight.detach().float().cpu()  # (units, in_features)
    channels, height, width = _image_shape(model, weight.shape[1])
    shown = weight[: min(max_tiles, DENSE_TEMPLATES)].reshape(-1, channels, height, width)
    tiles = shown.permute(0, 2, 3, 1) if channels == 3 else shown.mean(dim=1)
    return KernelTiles(LayerKind.DENSE, name, tiles.numpy(), weight.shape[0], channels)


def plot_kernels(model: nn.Module, path: str | Path, *, max_tiles: int = 64) -> Path:
    """The first layer's learned kernels as a grid, each tile on its own symmetric colour scale.

    Red is positive, blue negative, white zero (RGB kernels: grey is zero). Models without a
    convolution get the dense-layer templates of :func:`first_layer_kernels`, said in the title.
    """
    out = png_path(path)
    kernels = first_layer_kernels(model, max_tiles=max_tiles)
    count = len(kernels.tiles)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    tile = TILE_IN if kernels.kind is LayerKind.CONV else 1.5
    figure = new_figure((max(cols * tile, 4.4), rows * tile + 1.1))
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= count:
            continue
        data = kernels.tiles[i]
        bound = float(np.abs(data).max()) or 1.0
        if data.ndim == 3:  # RGB: 0 is mid-grey, each tile stretched to its own largest weight
            ax.imshow(np.clip(0.5 + 0.5 * data / bound, 0, 1), interpolation="nearest")
        else:
            ax.imshow(data, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        ax.set_title(str(i), fontsize=8, pad=2)
    figure.suptitle(_kernel_title(model, kernels), fontsize=10)
    return save_png(figure, out)


@dataclass(frozen=True)
class FeatureMaps:
    """One convolution's output for one image, as ``plot_features`` draws it."""

    layer: str  # the conv module's qualified name
    position: int  # 1 for the first convolution that ran, ``total`` for the last
    total: int  # how many convolutions ran
    after: str  # what was applied after the convolution: "" or "batchnorm + relu"
    maps: np.ndarray  # (C, H, W)

    @property
    def label(self) -> str:
        """The row label, e.g. "conv 1 (low-level)": the position in the stack, and its level."""
        return f"conv {self.position} ({_level(self.position - 1, self.total)})"

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.maps.shape))
        return f"FeatureMaps({self.label!r}, layer={self.layer!r}, {shape})"


def conv_layers(model: nn.Module) -> list[str]:
    """Qualified names of the model's convolutions, in registration order."""
    return [name for name, module in model.named_modules() if isinstance(module, CONV_TYPES)]


def capture_features(
    model: nn.Module, image: torch.Tensor, *, max_layers: int | None = 16
) -> list[FeatureMaps]:
    """Run one preprocessed image (C, H, W) through ``model`` and keep each convolution's output.

    Where a batch norm and an activation follow a convolution in a ``Sequential``, they are
    applied to the kept maps too, so the maps are what the next layer sees. Layers are listed in
    the order they ran; deeper models keep ``max_layers`` of them, evenly spaced, first and last
    included. Labels say low-, mid- or high-level by position in the stack.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a (C, H, W) tensor. Received: {shape}")
    if max_layers is not None and (not isinstance(max_layers, int) or max_layers < 1):
        raise ValueError(
            f"max_layers must be a positive integer or None. Received: max_layers={max_layers!r}"
        )
    followers = _followers(model)
    captured: dict[str, tuple[str, np.ndarray]] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            if name in captured:
                return
            maps = output.detach()[0].clone()  # (C, H, W); clone: an in-place ReLU may follow
            for follower in followers.get(name, []):
                maps = follower(maps[None])[0]
            after = " + ".join(_layer_name(f) for f in followers.get(name, []))
            captured[name] = (after, maps.float().cpu().numpy())

        return hook

    modules = dict(model.named_modules())
    names = conv_layers(model)
    if not names:
        name = getattr(getattr(model, "cnnlab", None), "name", type(model).__name__)
        raise ValueError(
            f"model {name!r} has no convolution, so no feature maps to show "
            "(conv_layers(model) is empty)"
        )
    handles = [modules[name].register_forward_hook(keep(name)) for name in names]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(image[None].to(device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    order = list(captured)  # dicts keep insertion order: the order the hooks fired
    return [
        FeatureMaps(order[i], i + 1, len(order), *captured[order[i]])
        for i in _spread(len(order), max_layers)
    ]


def plot_features(
    model: nn.Module,
    image: torch.Tensor,
    path: str | Path,
    *,
    max_maps: int = 8,
    max_layers: int | None = 16,
) -> Path:
    """One image through every convolution: the input, then one row of feature maps per layer.

    Each row shows the layer's ``max_maps`` most active maps (largest mean absolute value), each
    on its own grey scale, labelled with the channel index; rows run from low-level edges at the
    top to high-level features at the bottom. ``image`` is a preprocessed model input (C, H, W).
    """
    out = png_path(path)
    if not isinstance(max_maps, int) or max_maps < 1:
        raise ValueError(f"max_maps must be a positive integer. Received: max_maps={max_maps!r}")
    layers = capture_features(model, image, max_layers=max_layers)
    cols = max(min(max_maps, max(len(f.maps) for f in layers)), 2)
    figure = new_figure((2.4 + cols * TILE_IN, (len(layers) + 1) * TILE_IN + 0.8))
    grid = figure.add_gridspec(len(layers) + 1, cols)
    shape = "x".join(map(str, image.shape))
    ax = _tile(figure, grid[0, 0])
    _row_label(ax, f"input\n{shape}")
    ax.imshow(_displayable(image.detach().float().cpu().numpy()), cmap="gray")
    for row, features in enumerate(layers, start=1):
        channels, height, width = features.maps.shape
        after = f"\n+ {features.after}" if features.after else ""
        label = f"{features.label}\n{channels}x{height}x{width}{after}"
        if height * width == 1:  # 1x1 maps: one value each, so show all of them as one strip
            ax = _tile(figure, grid[row, :])
            ax.imshow(features.maps.reshape(1, -1), cmap="gray", aspect="auto")
            ax.set_title(f"all {channels} maps are 1x1: one value per channel", fontsize=7, pad=2)
            _row_label(ax, label)
            continue
        strength = np.abs(features.maps).mean(axis=(1, 2))
        for col, channel in enumerate(np.argsort(-strength, kind="stable")[:max_maps]):
            ax = _tile(figure, grid[row, col])
            ax.imshow(features.maps[channel], cmap="gray", interpolation="nearest")
            ax.set_title(f"#{channel}", fontsize=7, pad=2)
            if col == 0:
                _row_label(ax, label)
    name = getattr(getattr(model, "cnnlab", None), "name", type(model).__name__)
    figure.suptitle(
        f"{name}: low-, mid- and high-level features of one image{_subset(layers)}\n"
        f"(each row: the {cols} most active maps of one convolution, or all it has; "
        "each map on its own grey scale)",
        fontsize=10,
    )
    return save_png(figure, out)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _conv_weight(module: nn.Module) -> torch.Tensor:
    weight = module.dense_weight() if isinstance(module, ConnectionTableConv2d) else module.weight
    return weight.detach().float().cpu()


def _image_shape(model: nn.Module, features: int) -> tuple[int, int, int]:
    """The (C, H, W) a dense layer's ``features`` inputs come from."""
    info = getattr(model, "cnnlab", None)
    if info is not None and math.prod(info.input_shape) == features:
        return tuple(info.input_shape)
    side = math.isqrt(features)
    if side * side == features:
        return 1, side, side
    if features % 3 == 0 and math.isqrt(features // 3) ** 2 == features // 3:
        side = math.isqrt(features // 3)
        return 3, side, side
    raise ValueError(
        f"cannot show the first dense layer as images: its {features} inputs are not the "
        "model's input image (model.cnnlab.input_shape) nor a square"
    )


def _kernel_title(model: nn.Module, kernels: KernelTiles) -> str:
    name = getattr(getattr(model, "cnnlab", None), "name", type(model).__name__)
    shown, total = len(kernels.tiles), kernels.total
    of = f"{shown}" if shown == total else f"first {shown} of {total}"
    size = "x".join(map(str, kernels.tiles.shape[1:3]))
    colour = (
        "RGB, grey = 0"
        if kernels.tiles.ndim == 4
        else "red +, blue -"
        if kernels.channels == 1
        else f"mean of {kernels.channels} channels, red +, blue -"
    )
    if kernels.kind is LayerKind.DENSE:
        return (
            f"{name} has no convolution: its first dense layer ('{kernels.layer}') instead,\n"
            f"the weights of {of} units as {size} image templates ({colour})"
        )
    return f"{name}: {of} learned {size} kernels\nfirst convolution '{kernels.layer}'; {colour}"


def _followers(model: nn.Module) -> dict[str, list[nn.Module]]:
    """For each convolution in a Sequential: the batch norm and/or activation right after it."""
    result: dict[str, list[nn.Module]] = {}
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for i, (child_name, child) in enumerate(children):
            if not isinstance(child, CONV_TYPES):
                continue
            after: list[nn.Module] = []
            for _, follower in children[i + 1 :]:
                kind = layer_kind(follower)
                if kind is LayerKind.NORM and not after:
                    after.append(follower)
                elif kind is LayerKind.ACTIVATION:
                    after.append(follower)
                    break
                else:
                    break
            if after:
                result[f"{parent_name}.{child_name}" if parent_name else child_name] = after
    return result


def _layer_name(module: nn.Module) -> str:
    if layer_kind(module) is LayerKind.NORM:
        return "batchnorm"
    return getattr(module, "activation_name", type(module).__name__.lower())


def _spread(count: int, limit: int | None) -> list[int]:
    """``limit`` evenly spaced indices of ``range(count)``, the first and last included."""
    if limit is None or count <= limit:
        return list(range(count))
    if limit == 1:
        return [0]
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def _level(index: int, total: int) -> str:
    """Low-level for the first third of the stack, high-level for the last, mid between."""
    if total == 1:
        return "low-level"
    position = index / (total - 1)
    return "low-level" if position < 1 / 3 else "high-level" if position > 2 / 3 else "mid-level"


def _tile(figure: Any, cell: Any) -> Any:
    ax = figure.add_subplot(cell)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)
    return ax


def _subset(layers: list[FeatureMaps]) -> str:
    total = layers[-1].total
    return f" ({len(layers)} of its {total} convolutions)" if len(layers) < total else ""


def _row_label(ax: Any, text: str) -> None:
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=9, labelpad=8)


def _displayable(image: np.ndarray) -> np.ndarray:
    """A (C, H, W) model input stretched to 0..1 for display: grey, RGB or the channel mean."""
    data = image.transpose(1, 2, 0) if image.shape[0] == 3 else image.mean(axis=0)
    low, high = float(data.min()), float(data.max())
    return (data - low) / (high - low) if high > low else np.zeros_like(data)
