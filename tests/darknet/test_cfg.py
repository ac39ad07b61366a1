"""The cfg parser: Darknet's rules, and errors that name the file, line, key and value."""

from __future__ import annotations

import pytest

from cnnlab.darknet import CfgError, UnsupportedLayerError, parse_cfg, plan_network, read_cfg

from .conftest import CFG_DIR, needs_darknet_cfgs

NET = "[net]\nheight=8\nwidth=8\nchannels=3\n"


def test_darknet_rules_whitespace_comments_aliases_defaults():
    cfg = parse_cfg(
        NET + "# a comment\n; another\n[conv]\n fil ters = 4\nsize=3\n\tpad=1\n"
        "[max]\nsize=2\nstride=2\n[route]\nlayers = -2, 0\n"
    )
    conv, pool, route = cfg.layers
    assert (conv.kind, conv.header, conv.line) == ("convolutional", "[conv]", 7)
    assert conv.get("filters") == 4 and conv.options["filters"].line == 8
    assert conv.get("activation", "logistic") == "logistic"
    assert pool.kind == "maxpool" and route.get("layers") == (-2, 0)
    plan = plan_network(cfg)
    assert plan.layers[0].settings["activation"] == "logistic"  # Darknet's default
    assert plan.layers[0].settings["padding"] == 1  # pad=1 means size/2
    assert plan.layers[1].output_shape == (4, 4, 4)
    assert plan.layers[2].output_shape == (8, 8, 8)


def test_pad_and_padding():
    explicit = plan_network(parse_cfg(NET + "[conv]\nfilters=2\nsize=3\npadding=2\n"))
    assert explicit.layers[0].output_shape == (2, 10, 10)  # (8 + 2*2 - 3) + 1
    none = plan_network(parse_cfg(NET + "[conv]\nfilters=2\nsize=3\n"))
    assert none.layers[0].output_shape == (2, 6, 6)


def test_first_of_repeated_keys_wins_as_in_darknet():
    cfg = parse_cfg(NET + "[conv]\nfilters=2\nfilters=5\n")
    assert cfg.layers[0].get("filters") == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            NET + "[conv]\nfilters 4\n",
            "<string>, line 6, [convolutional]: 'filters 4': expected key=value",
        ),
        (
            NET + "[conv]\nactivation=swish\n",
            "line 6, [convolutional]: activation=swish: expected one of Darknet's activations",
        ),
        (
            NET + "[conv]\nfilters=four\n",
            "line 6, [convolutional]: filters=four: expected an integer",
        ),
        (NET + "[conv]\nkernel=3\n", "line 6, [convolutional]: unknown key 'kernel' (kernel=3)"),
        (NET + "[convolution]\n", "line 5: unknown section '[convolution]'"),
        ("filters=3\n", "line 1: 'filters=3' comes before any section"),
        ("[conv]\nfilters=3\n", "line 1: the first section is [conv]; expected [net]"),
    ],
)
def test_bad_cfg_text_names_line_key_value(text, message):
    with pytest.raises(CfgError, match=None) as raised:
        parse_cfg(text)
    assert message in str(raised.value)


def test_route_pointing_forward_is_refused():
    cfg = parse_cfg(NET + "[conv]\nfilters=2\nsize=1\n[route]\nlayers=2\n[conv]\nfilters=2\n")
    with pytest.raises(CfgError) as raised:
        plan_network(cfg)
    assert "line 9, [route]: layers=2: layer 1 can only use layers 0..0" in str(raised.value)


def test_route_of_maps_of_different_sizes_is_refused():
    cfg = parse_cfg(
        NET + "[conv]\nfilters=2\nsize=1\n[max]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n"
    )
    with pytest.raises(CfgError, match="routed maps must have the same size"):
        plan_network(cfg)


def test_unsupported_layer_type_is_named():
    cfg = parse_cfg(NET + "[crop]\ncrop_height=4\ncrop_width=4\n")
    with pytest.raises(
        UnsupportedLayerError, match=r"layer 0: layer type crop .* is not supported"
    ):
        plan_network(cfg)


def test_files_missing_directory_binary(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_cfg(tmp_path)
    with pytest.raises(FileNotFoundError, match="No such cfg file"):
        read_cfg(tmp_path / "missing.cfg")
    binary = tmp_path / "x.cfg"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(CfgError, match="not text"):
        read_cfg(binary)


# Debian's cfgs that cnnlab refuses, and the layer type that makes it refuse.
REFUSED = {
    "gru.cfg": "gru",
    "rnn.cfg": "rnn",
    "rnn.train.cfg": "rnn",
    "strided.cfg": "crop",
    "vgg-16.cfg": "crop",
    "t1.test.cfg": "detection",
    "yolov1-tiny.cfg": "detection",
    "yolov1.cfg": "local",
}


@needs_darknet_cfgs
@pytest.mark.parametrize("name", sorted(p.name for p in CFG_DIR.glob("*.cfg")) or ["none"])
def test_every_debian_cfg_parses_and_plans_or_is_refused_by_type(name):
    cfg = read_cfg(CFG_DIR / name)
    if name in REFUSED:
        with pytest.raises(UnsupportedLayerError, match=f"layer type {REFUSED[name]} "):
            plan_network(cfg)
        return
    plan = plan_network(cfg)
    assert len(plan.layers) == len(cfg.layers) and plan.flops > 0
