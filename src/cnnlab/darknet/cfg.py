"""Darknet's ``.cfg`` files: sections of ``key=value`` lines, read by Darknet's rules.

The rules are those of pjreddie/darknet's ``read_cfg`` and ``parse_*`` functions (src/parser.c,
2018): every space, tab and newline is removed from a line (so ``layers = -1, 8`` is
``layers=-1,8``), a line starting with ``#`` or ``;`` is a comment, ``[conv]`` is
``[convolutional]`` (and the other aliases below), and an option that is left out takes Darknet's
default (a convolution's activation is ``logistic``). Unlike Darknet, which skips what it cannot
use, every unknown section, unknown key and unreadable value is an error that names the file,
the line, the key and the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# Darknet's activation names (src/activations.c, get_activation).
ACTIVATIONS = (
    "logistic",
    "loggy",
    "relu",
    "elu",
    "selu",
    "relie",
    "plse",
    "hardtan",
    "lhtan",
    "linear",
    "ramp",
    "leaky",
    "tanh",
    "stair",
)

# Every header Darknet accepts, mapped to one name per layer type (string_to_layer_type).
SECTION_ALIASES = {
    "net": "net",
    "network": "net",
    "conv": "convolutional",
    "convolutional": "convolutional",
    "deconv": "deconvolutional",
    "deconvolutional": "deconvolutional",
    "local": "local",
    "activation": "activation",
    "logistic": "logistic",
    "l2norm": "l2norm",
    "crnn": "crnn",
    "gru": "gru",
    "lstm": "lstm",
    "rnn": "rnn",
    "conn": "connected",
    "connected": "connected",
    "max": "maxpool",
    "maxpool": "maxpool",
    "reorg": "reorg",
    "avg": "avgpool",
    "avgpool": "avgpool",
    "dropout": "dropout",
    "lrn": "normalization",
    "normalization": "normalization",
    "batchnorm": "batchnorm",
    "soft": "softmax",
    "softmax": "softmax",
    "route": "route",
    "upsample": "upsample",
    "shortcut": "shortcut",
    "crop": "crop",
    "cost": "cost",
    "detection": "detection",
    "region": "region",
    "yolo": "yolo",
    "iseg": "iseg",
}

INT, FLOAT, TEXT, INTS, FLOATS, ACTIVATION = "int", "float", "text", "ints", "floats", "activation"

# Keys Darknet reads for every layer (parse_network_cfg), after the layer's own.
_EVERY_LAYER = {
    "truth": INT,
    "onlyforward": INT,
    "stopbackward": INT,
    "dontsave": INT,
    "dontload": INT,
    "numload": INT,
    "dontloadscales": INT,
    "learning_rate": FLOAT,
    "smooth": FLOAT,
}
_CONV = {"filters": INT, "size": INT, "stride": INT, "pad": INT, "padding": INT}
_DETECT_SCALES = dict.fromkeys(
    ("coord_scale", "object_scale", "noobject_scale", "class_scale", "jitter"), FLOAT
)

# The keys each section may hold and how their values read (parser.c, parse_<type>).
KEYS: dict[str, dict[str, str]] = {
    "net": {
        **dict.fromkeys(
            ("batch", "subdivisions", "time_steps", "notruth", "random", "adam", "height"), INT
        ),
        **dict.fromkeys(("width", "channels", "inputs", "max_crop", "min_crop", "center"), INT),
        **dict.fromkeys(("burn_in", "step", "max_batches", "seen"), INT),
        **dict.fromkeys(("learning_rate", "momentum", "decay", "B1", "B2", "eps"), FLOAT),
        **dict.fromkeys(("max_ratio", "min_ratio", "clip", "angle", "aspect"), FLOAT),
        **dict.fromkeys(("saturation", "exposure", "hue", "power", "scale", "gamma"), FLOAT),
        "policy": TEXT,
        "steps": INTS,
        "scales": FLOATS,
    },
    "convolutional": {
        **_CONV,
        "groups": INT,
        "activation": ACTIVATION,
        "batch_normalize": INT,
        "binary": INT,
        "xnor": INT,
        "flipped": INT,
        "dot": FLOAT,
    },
    "deconvolutional": {**_CONV, "activation": ACTIVATION, "batch_normalize": INT},
    "local": {**_CONV, "activation": ACTIVATION},
    "connected": {"output": INT, "activation": ACTIVATION, "batch_normalize": INT},
    "softmax": {
        "groups": INT,
        "temperature": FLOAT,
        "tree": TEXT,
        "spatial": FLOAT,
        "noloss": INT,
    },
    "yolo": {
        **dict.fromkeys(("classes", "num", "max", "random"), INT),
        **dict.fromkeys(
            ("jitter", "ignore_thresh", "truth_thresh", "iou_thresh", "cls_normalizer"), FLOAT
        ),
        "mask": INTS,
        "map": TEXT,
        "anchors": FLOATS,
    },
    "region": {
        **dict.fromkeys(("coords", "classes", "num", "log", "sqrt", "softmax"), INT),
        **dict.fromkeys(("background", "max", "rescore", "classfix", "absolute"), INT),
        **dict.fromkeys(("random", "bias_match"), INT),
        **_DETECT_SCALES,
        "thresh": FLOAT,
        "mask_scale": FLOAT,
        "tree": TEXT,
        "map": TEXT,
        "anchors": FLOATS,
    },
    "detection": {
        **dict.fromkeys(("coords", "classes", "rescore", "num", "side", "softmax"), INT),
        **dict.fromkeys(("sqrt", "max", "forced", "random", "reorg"), INT),
        **_DETECT_SCALES,
    },
    "cost": {"type": TEXT, **dict.fromkeys(("scale", "ratio", "noobj", "thresh"), FLOAT)},
    "crop": {
        **dict.fromkeys(("crop_height", "crop_width", "flip", "noadjust"), INT),
        **dict.fromkeys(("angle", "saturation", "exposure", "shift"), FLOAT),
    },
    "reorg": dict.fromkeys(("stride", "reverse", "flatten", "extra"), INT),
    "maxpool": dict.fromkeys(("stride", "size", "padding"), INT),
    "avgpool": {},
    "dropout": {"probability": FLOAT},
    "normalization": {"alpha": FLOAT, "beta": FLOAT, "kappa": FLOAT, "size": INT},
    "batchnorm": {},
    "shortcut": {"from": INT, "activation": ACTIVATION, "alpha": FLOAT, "beta": FLOAT},
    "l2norm": {},
    "logistic": {},
    "activation": {"activation": ACTIVATION},
    "upsample": {"stride": INT, "scale": FLOAT},
    # groups/group_id: AlexeyAB's darknet (and OpenCV) split each input's channels.
    "route": {"layers": INTS, "groups": INT, "group_id": INT},
    "rnn": {
        **dict.fromkeys(("output", "hidden", "batch_normalize", "shortcut"), INT),
        "activation": ACTIVATION,
    },
    "gru": dict.fromkeys(("output", "batch_normalize", "tanh"), INT),
    "lstm": dict.fromkeys(("output", "batch_normalize"), INT),
    "crnn": {
        **dict.fromkeys(("output_filters", "hidden_filters", "batch_normalize", "shortcut"), INT),
        "activation": ACTIVATION,
    },
    "iseg": {"classes": INT, "ids": INT},
}


class CfgError(ValueError):
    """A cfg file Darknet's rules cannot read, or a value cnnlab cannot build: names the place."""


@dataclass(frozen=True)
class Option:
    """One ``key=value`` line: the text as written (whitespace removed) and its value."""

    key: str
    text: str
    value: Any
    line: int


@dataclass(frozen=True)
class Section:
    """One ``[type]`` section with its options; ``kind`` is the canonical type name."""

    kind: str
    header: str  # as written, e.g. "[conv]"
    line: int
    source: str  # the file (or "<string>") for error messages
    options: dict[str, Option] = field(default_factory=dict)

    def __repr__(self) -> str:
        keys = ", ".join(f"{o.key}={o.text}" for o in self.options.values())
        return f"Section({self.kind!r}, line={self.line}, {keys})"

    def get(self, key: str, default: Any = None) -> Any:
        """The option's value, or ``default`` when the section leaves it out (Darknet's default)."""
        assert key in KEYS[self.kind] or key in _EVERY_LAYER, (self.kind, key)
        option = self.options.get(key)
        return default if option is None else option.value

    def has(self, key: str) -> bool:
        return key in self.options

    def error(self, key: str | None, expected: str) -> CfgError:
        """An error at ``key``'s line (or the header's), naming the key and its value."""
        option = self.options.get(key) if key else None
        if option is None:
            where = f"{self.source}, line {self.line}, [{self.kind}]"
            subject = f"{key} (default)" if key else self.header
            return CfgError(f"{where}: {subject}: {expected}")
        return CfgError(
            f"{self.source}, line {option.line}, [{self.kind}]: {key}={option.text}: {expected}"
        )


@dataclass(frozen=True)
class DarknetCfg:
    """A whole cfg: the ``[net]`` section and the layers in order (layer i is ``layers[i]``)."""

    source: str
    net: Section
    layers: tuple[Section, ...]

    def __repr__(self) -> str:
        return f"DarknetCfg({self.source!r}, {len(self.layers)} layers)"


def _convert(kind: str, text: str) -> Any:
    if kind == INT:
        return int(text)
    if kind == FLOAT:
        return float(text)
    if kind in (INTS, FLOATS):
        parse = int if kind == INTS else float
        return tuple(parse(part) for part in text.split(","))
    if kind == ACTIVATION and text not in ACTIVATIONS:
        raise ValueError
    return text


_EXPECTED = {
    INT: "expected an integer",
    FLOAT: "expected a number",
    INTS: "expected integers separated by commas",
    FLOATS: "expected numbers separated by commas",
    ACTIVATION: f"expected one of Darknet's activations: {', '.join(ACTIVATIONS)}",
    TEXT: "expected a value",
}


def parse_cfg(text: str, source: str = "<string>") -> DarknetCfg:
    """Parse cfg text; ``source`` names it in errors."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(ch for ch in raw if ch not in " \t\n\r")  # Darknet's strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            name = line[1:-1] if line.endswith("]") else None
            kind = SECTION_ALIASES.get(name or "")
            if kind is None:
                known = ", ".join(f"[{n}]" for n in sorted(set(SECTION_ALIASES)))
                raise CfgError(
                    f"{source}, line {number}: unknown section {raw.strip()!r}; "
                    f"expected one of Darknet's: {known}"
                )
            sections.append(Section(kind, line, number, source))
            continue
        if not sections:
            raise CfgError(
                f"{source}, line {number}: {raw.strip()!r} comes before any section; "
                "expected a [net] section first"
            )
        section = sections[-1]
        key, equals, value = line.partition("=")
        if not equals or not key or not value:
            raise CfgError(
                f"{source}, line {number}, [{section.kind}]: {raw.strip()!r}: expected key=value"
            )
        allowed = (
            KEYS[section.kind] if section.kind == "net" else {**KEYS[section.kind], **_EVERY_LAYER}
        )
        if key not in allowed:
            raise CfgError(
                f"{source}, line {number}, [{section.kind}]: unknown key {key!r} ({key}={value}); "
                f"expected one of: {', '.join(sorted(allowed))}"
            )
        try:
            converted = _convert(allowed[key], value)
        except ValueError:
            expected = _EXPECTED[allowed[key]]
            raise CfgError(
                f"{source}, line {number}, [{section.kind}]: {key}={value}: {expected}"
            ) from None
        # Darknet's option_find returns the first of repeated keys, so the first one stays.
        section.options.setdefault(key, Option(key, value, converted, number))
    if not sections:
        raise CfgError(f"{source}: no sections; expected a [net] section followed by layers")
    if sections[0].kind != "net":
        raise CfgError(
            f"{source}, line {sections[0].line}: the first section is {sections[0].header}; "
            "expected [net] or [network]"
        )
    extra_net = [s for s in sections[1:] if s.kind == "net"]
    if extra_net:
        raise CfgError(f"{source}, line {extra_net[0].line}: a second [net] section")
    return DarknetCfg(source, sections[0], tuple(sections[1:]))


def read_cfg(path: str | os.PathLike[str]) -> DarknetCfg:
    """Read and parse a ``.cfg`` file."""
    file = Path(path)
    if file.is_dir():
        raise FileNotFoundError(f"cfg must be a Darknet .cfg file, not a folder. Received: {file}")
    if not file.exists():
        raise FileNotFoundError(f"No such cfg file: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CfgError(f"{file} is not a Darknet cfg: it is not text (UTF-8)") from None
    return parse_cfg(text, str(file))


def format_cfg(cfg: DarknetCfg) -> str:
    """The cfg as Darknet reads it: each section's header, then its options as written."""
    blocks = []
    for section in (cfg.net, *cfg.layers):
        lines = [section.header] + [f"{o.key}={o.text}" for o in section.options.values()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def set_options(section: Section, **values: Any) -> Section:
    """A copy of ``section`` with ``values`` set (as Darknet would read them from text)."""
    options = dict(section.options)
    for key, value in values.items():
        old = options.get(key)
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        options[key] = Option(key, text, value, old.line if old else section.line)
    return replace(section, options=options)


# Layers that keep the channel count of the classifier layer before them.
_AFTER_CLASSIFIER = ("avgpool", "softmax", "dropout", "cost")


def adapt_cfg(
    cfg: DarknetCfg, *, channels: int | None = None, classes: int | None = None
) -> DarknetCfg:
    """The cfg with another input channel count and/or another class count.

    ``classes`` resizes the last convolutional or connected layer (the classifier), which only
    average pooling, softmax, dropout and cost layers may follow; fine-tuning on other data
    starts there.
    """
    net, layers = cfg.net, list(cfg.layers)
    if channels is not None:
        net = set_options(net, channels=channels)
    if classes is not None:
        index = len(layers) - 1
        while index >= 0 and layers[index].kind in _AFTER_CLASSIFIER:
            index -= 1
        if index < 0 or layers[index].kind not in ("convolutional", "connected"):
            found = layers[index].header if index >= 0 else "nothing"
            raise ValueError(
                f"{cfg.source}: cannot set the class count: expected a convolutional or "
                f"connected layer before the final pooling/softmax, found {found}. "
                f"Received: classes={classes}"
            )
        key = "filters" if layers[index].kind == "convolutional" else "output"
        layers[index] = set_options(layers[index], **{key: classes})
    return DarknetCfg(cfg.source, net, tuple(layers))
