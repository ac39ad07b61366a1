"""Darknet's layer table of a cfg, in two layouts, and as data.

``lecture``: the layout of the lecture's printout and of ``cnnlab summary --style darknet``
(``format_darknet``), with a total; for darknet19.cfg the two are equal line for line.
``pjreddie``: byte for byte what Debian's ``darknet`` binary (pjreddie, 2018) prints to stderr
while it parses the cfg: the format strings of each layer's make_*_layer function (it prints no
total).
"""

# The pjreddie layout keeps Darknet's printf format strings verbatim, so they read as the C does.
# ruff: noqa: UP031

from __future__ import annotations

import enum
from typing import Any

from cnnlab.darknet.network import LayerPlan, NetworkPlan


class TableStyle(str, enum.Enum):
    LECTURE = "lecture"
    PJREDDIE = "pjreddie"


def _hwc(shape: tuple[int, int, int]) -> str:
    channels, height, width = shape
    return f"{height:>3} x {width:>3} x{channels:>4}"


def _lecture_row(layer: LayerPlan, scale: float) -> str:
    s, kind = layer.settings, layer.kind
    head = f"{layer.index:>6} "
    inp, out = _hwc(layer.input_shape), _hwc(layer.output_shape)
    if kind == "convolutional":
        size = f"{s['size']} x {s['size']} / {s['stride']}"
        flops = f"{layer.flops / scale:.3f}"
        return f"{head}{'conv':<4}{s['filters']:>7}  {size:>9}  {inp} -> {out}  {flops}"
    if kind == "maxpool":
        size = f"{s['size']} x {s['size']} / {s['stride']}"
        return f"{head}{'max':<11}  {size:>9}  {inp} -> {out}"
    if kind == "avgpool":
        return f"{head}{'avg':<24}{inp} -> {layer.outputs:>5}"
    if kind == "connected":
        n_in = s["inputs"]
        return f"{head}{'connected':<24}{n_in:>15} -> {layer.outputs:>5}  {layer.flops / scale:.3f}"
    if kind == "dropout":
        p = f"p = {s['probability']:.2f}"
        return f"{head}{'dropout':<11}  {p:>9}  {layer.outputs:>15} -> {layer.outputs:>5}"
    if kind in ("softmax", "cost"):
        return f"{head}{kind:<44}{layer.outputs:>4}"
    if kind == "route":
        sources = " ".join(str(i) for i in s["layers"])
        return f"{head}{'route ' + sources:<24}{'':>15} -> {out}"
    if kind == "shortcut":
        return f"{head}{'res':<11}  {s['source']:>9}  {inp} -> {out}"
    if kind == "upsample":
        return f"{head}{'upsample':<11}  {str(s['stride']) + 'x':>9}  {inp} -> {out}"
    if kind == "reorg":
        if s["extra"]:
            n_in = layer.input_shape[0] * layer.input_shape[1] * layer.input_shape[2]
            return f"{head}{'reorg':<24}{n_in:>15} -> {layer.outputs:>5}"
        return f"{head}{'reorg':<11}  {'/ ' + str(s['stride']):>9}  {inp} -> {out}"
    return f"{head}{kind:<24}{inp} -> {out}"  # region, yolo: their input, raw


def _pjreddie_row(layer: LayerPlan) -> str:
    s, kind = layer.settings, layer.kind
    c, h, w = layer.input_shape
    oc, oh, ow = layer.output_shape
    inputs = c * h * w
    if kind == "convolutional":
        text = "conv  %5d %2d x%2d /%2d  %4d x%4d x%4d   ->  %4d x%4d x%4d  %5.3f BFLOPs" % (
            s["filters"], s["size"], s["size"], s["stride"], w, h, c, ow, oh, oc,
            layer.flops / 1e9,
        )  # fmt: skip
    elif kind == "maxpool":
        text = "max          %d x %d / %d  %4d x%4d x%4d   ->  %4d x%4d x%4d" % (
            s["size"], s["size"], s["stride"], w, h, c, ow, oh, oc,
        )  # fmt: skip
    elif kind == "avgpool":
        text = "avg                     %4d x%4d x%4d   ->  %4d" % (w, h, c, c)
    elif kind == "softmax":
        text = "softmax                                        %4d" % inputs
    elif kind == "cost":
        text = "cost                                           %4d" % inputs
    elif kind == "connected":
        text = "connected                            %4d  ->  %4d" % (inputs, oc)
    elif kind == "dropout":
        text = "dropout       p = %.2f               %4d  ->  %4d" % (
            s["probability"], inputs, inputs,
        )  # fmt: skip
    elif kind == "route":
        text = "route " + "".join(" %d" % i for i in s["layers"])
    elif kind == "shortcut":
        c2, h2, w2 = layer.settings["from_shape"]
        text = "res  %3d                %4d x%4d x%4d   ->  %4d x%4d x%4d" % (
            s["source"], w2, h2, c2, w, h, c,
        )  # fmt: skip
    elif kind == "upsample":
        text = "upsample           %2dx  %4d x%4d x%4d   ->  %4d x%4d x%4d" % (
            s["stride"], w, h, c, ow, oh, oc,
        )  # fmt: skip
    elif kind == "reorg" and s["extra"]:
        text = "reorg              %4d   ->  %4d" % (inputs, layer.outputs)
    elif kind == "reorg":
        text = "reorg              /%2d  %4d x%4d x%4d   ->  %4d x%4d x%4d" % (
            s["stride"], w, h, c, ow, oh, oc,
        )  # fmt: skip
    elif kind == "region":
        text = "detection"
    else:
        text = kind  # yolo
    return "%5d %s" % (layer.index, text)


def format_table(plan: NetworkPlan, style: TableStyle | str = TableStyle.LECTURE) -> str:
    """The layer table of ``plan`` in ``style`` (``lecture`` or ``pjreddie``)."""
    try:
        style = TableStyle(style)
    except ValueError:
        choices = ", ".join(s.value for s in TableStyle)
        raise ValueError(f"style must be one of {choices}. Received: style={style!r}") from None
    if style is TableStyle.PJREDDIE:
        header = "layer     filters    size              input                output"
        return "\n".join([header, *(_pjreddie_row(layer) for layer in plan.layers)])
    # Darknet prints billions; a LeNet would be all zeros, so small models print millions.
    unit, scale = ("B", 1e9) if plan.flops >= 1e8 else ("M", 1e6)
    lines = [
        f"layer  type     filters  size/strd   input              output           {unit}FLOPs"
    ]
    lines += [_lecture_row(layer, scale) for layer in plan.layers]
    lines.append(f"    total {plan.flops / scale:.2f} {unit}FLOPs")
    return "\n".join(lines)


def table_data(plan: NetworkPlan) -> dict[str, Any]:
    """The table as JSON-ready data: shapes as (C, H, W), FLOPs per layer and in total."""
    return {
        "cfg": plan.cfg.source,
        "input_shape": list(plan.input_shape),
        "layers": [
            {
                "index": layer.index,
                "type": layer.kind,
                "line": layer.section.line,
                "input_shape": list(layer.input_shape),
                "output_shape": list(layer.output_shape),
                "flops": layer.flops,
                "settings": {
                    key: list(value) if isinstance(value, tuple) else value
                    for key, value in layer.settings.items()
                },
            }
            for layer in plan.layers
        ],
        "total_flops": plan.flops,
        "total_bflops": round(plan.flops / 1e9, 3),
    }
