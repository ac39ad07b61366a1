"""Darknet's layer table: equal to Debian's darknet binary, and to cnnlab's own summary."""

from __future__ import annotations

import re
import subprocess

import pytest

from cnnlab.darknet import format_table, plan_network, table_data
from cnnlab.summary import format_darknet, summarize

from .conftest import CFG_DIR, DARKNET_BIN, needs_darknet_binary, needs_darknet_cfgs
from .test_cfg import REFUSED

# Darknet says "key: Using default 'x'" on stderr for some options it fills in, mid-table.
DEFAULT_NOTICE = re.compile(r"\w+: Using default '[^']*'\n")


@needs_darknet_cfgs
def test_darknet19_equals_cnnlab_summary_line_for_line():
    ours = format_table(plan_network(CFG_DIR / "darknet19.cfg"))
    assert ours.splitlines() == format_darknet(summarize("darknet19")).splitlines()


@needs_darknet_cfgs
@pytest.mark.parametrize(
    ("name", "bflops"), [("yolov2-tiny", 5.406), ("yolov3-tiny", 5.565), ("darknet19", 7.291)]
)
def test_totals_as_pjreddie_counts_them(name, bflops):
    data = table_data(plan_network(CFG_DIR / f"{name}.cfg"))
    assert data["total_bflops"] == bflops
    assert data["total_flops"] == sum(layer["flops"] for layer in data["layers"])


def darknet_table(cfg) -> str:
    """What the binary prints while it parses ``cfg`` (weights that do not exist stop it)."""
    data = str(CFG_DIR / "imagenet1k.data")
    result = subprocess.run(
        [DARKNET_BIN, "classifier", "predict", data, str(cfg), "/nonexistent.weights", "x.jpg"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return DEFAULT_NOTICE.sub("", result.stderr).split("Loading weights")[0].rstrip("\n")


@needs_darknet_binary
@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov2-voc", "alexnet"])
def test_pjreddie_layout_equals_the_binary(name):
    cfg = CFG_DIR / f"{name}.cfg"
    assert format_table(plan_network(cfg), "pjreddie") == darknet_table(cfg)


@pytest.mark.slow
@needs_darknet_binary
@pytest.mark.parametrize(
    "name", sorted(p.name for p in CFG_DIR.glob("*.cfg") if p.name not in REFUSED) or ["none"]
)
def test_every_supported_debian_cfg_prints_as_the_binary(name):
    # The refused cfgs are tested in test_cfg (each fails with its layer type's name).
    assert format_table(plan_network(CFG_DIR / name), "pjreddie") == darknet_table(CFG_DIR / name)


@needs_darknet_cfgs
def test_lecture_layout_of_yolov3_tiny():
    lines = format_table(plan_network(CFG_DIR / "yolov3-tiny.cfg")).splitlines()
    assert lines[12] == "    11 max          2 x 2 / 1   13 x  13 x 512 ->  13 x  13 x 512"
    assert lines[18] == "    17 route 13                                ->  13 x  13 x 256"
    assert lines[20] == "    19 upsample            2x   13 x  13 x 128 ->  26 x  26 x 128"
    assert lines[-1] == "    total 5.56 BFLOPs"


def test_unknown_style_is_refused(small_cfg):
    with pytest.raises(
        ValueError, match=re.escape("style must be one of lecture, pjreddie. Received: style='x'")
    ):
        format_table(plan_network(small_cfg), "x")
