"""The device catalogue: packaged figures, the lecture's values, validation messages, mu and eta."""

import json
import math

import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab.bench.catalog import (
    KINDS,
    PACKAGED,
    SOURCED,
    UNITS,
    DeviceSpec,
    effectiveness,
    load_catalog,
    match_device,
    parse_catalog,
    plot_catalog,
)
from cnnlab.cli.hw import hw_app

REQUIRED_DEVICES = (
    "K80",
    "TPU v1",
    "P40",
    "V100",
    "RTX 3090",
    "A100 40GB",
    "H100 SXM",
    "H200",
    "Edge TPU",
    "Raspberry Pi 4",
    "NCS2",
    "Ryzen 9 7950X",
)


@pytest.fixture(scope="module")
def catalog():
    return {spec.name: spec for spec in load_catalog()}


def device_entry(drop=(), **changes):
    """A valid device entry (the packaged K80's) with ``changes``, without the keys in ``drop``."""
    entry = {key: value for key, value in load_catalog()[0].to_dict().items() if key != "origin"}
    entry.update(changes)
    return {key: value for key, value in entry.items() if key not in drop}


def write_catalog(tmp_path, *devices, **top):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**top, "devices": list(devices)}))
    return path


def test_every_packaged_device_validates_and_cites_every_figure(catalog):
    assert len(catalog) >= len(REQUIRED_DEVICES)
    for spec in catalog.values():
        assert spec.kind in KINDS
        assert spec.origin == PACKAGED
        for figure in SOURCED:  # null figures too: their source says why
            assert len(spec.source(figure)) > 10, (spec.name, figure)


@pytest.mark.parametrize("name", REQUIRED_DEVICES)
def test_required_devices_are_present(catalog, name):
    assert name in catalog


def test_a_current_desktop_cpu_computes_its_fp32_peak(catalog):
    ryzen = catalog["Ryzen 9 7950X"]
    assert ryzen.kind == "cpu"
    assert ryzen.peak_fp32_tflops == pytest.approx(16 * 4.5e9 * 32 / 1e12)  # cores x Hz x FLOPs
    assert "computed here" in ryzen.source("peak_fp32_tflops")


@pytest.mark.parametrize(
    ("name", "figure", "value"),
    [
        ("K80", "peak_fp32_tflops", 6),
        ("K80", "tdp_w", 300),
        ("K80", "memory_bandwidth_gbs", 320),
        ("TPU v1", "peak_int8_tops", 90),
        ("TPU v1", "tdp_w", 75),
        ("TPU v1", "memory_bandwidth_gbs", 34),
        ("TPU v1", "price_usd", None),
        ("P40", "peak_fp32_tflops", 12),
        ("P40", "peak_int8_tops", 48),
        ("P40", "tdp_w", 250),
        ("P40", "memory_bandwidth_gbs", 350),
        ("V100", "peak_fp16_tflops", 125),
        ("RTX 3090", "memory_gb", 24),
    ],
)
def test_the_lectures_values_are_exact(catalog, name, figure, value):
    assert getattr(catalog[name], figure) == value
    if value is not None:
        assert "lecture" in catalog[name].source(figure)


def test_lecture_years_and_the_rtx_3090_core_arithmetic(catalog):
    assert "2012" in catalog["K80"].source("year")  # the lecture's year, next to the real one
    assert (catalog["K80"].year, catalog["TPU v1"].year, catalog["P40"].year) == (2014, 2015, 2016)
    assert catalog["RTX 3090"].peak_fp32_tflops == pytest.approx(10_496 * 1.70e9 * 2 / 1e12, 0.01)


def test_the_packaged_units_header_is_the_documented_one():
    from importlib import resources

    text = resources.files("cnnlab.bench").joinpath("devices.json").read_text(encoding="utf-8")
    assert json.loads(text)["units"] == UNITS


def test_mu_and_eta_by_hand(catalog):
    k80 = effectiveness(catalog["K80"])
    assert k80["basis"] == "datasheet"
    assert k80["eta_fp32_gflops_per_w"] == pytest.approx(6e12 / 300 / 1e9)  # 20 GFLOP/s per W
    assert k80["mu_fp32_gflops_per_usd"] == pytest.approx(6e12 / 5000 / 1e9)  # 1.2 per dollar
    assert k80["eta_fp16_gflops_per_w"] is None
    rtx = effectiveness(catalog["RTX 3090"])
    assert rtx["mu_fp16_gflops_per_usd"] == pytest.approx(71e3 / 1499)
    assert rtx["eta_int8_gops_per_w"] == pytest.approx(284e3 / 350)
    assert rtx["best_low_precision"] == "INT8"
    tpu = effectiveness(catalog["TPU v1"])
    assert tpu["mu_int8_gops_per_usd"] is None and not tpu["price_known"]
    assert tpu["eta_int8_gops_per_w"] == pytest.approx(1200)


def test_match_device_on_torch_names(catalog):
    assert match_device("NVIDIA H200").name == "H200"
    assert match_device("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert match_device("Tesla V100-SXM2-16GB").name == "V100"
    assert match_device("  nvidia   GEFORCE rtx 3090 ").name == "RTX 3090"
    assert match_device("AMD Ryzen 9 7950X 16-Core Processor").name == "Ryzen 9 7950X"
    assert match_device("Intel(R) Xeon(R) Processor") is None
    assert match_device("NVIDIA H200", catalog=[]) is None


def test_a_user_catalogue_overrides_and_adds(tmp_path, catalog):
    cheaper = device_entry(price_usd=4000, notes="bought used")
    jetson = device_entry(name="Jetson Orin Nano", aliases=["Orin"], kind="edge", year=2023)
    path = write_catalog(tmp_path, cheaper, jetson, units={"tdp_w": "W"})
    merged = load_catalog(path)
    by_name = {spec.name: spec for spec in merged}
    assert len(merged) == len(catalog) + 1
    assert by_name["K80"].price_usd == 4000 and by_name["K80"].origin == str(path)
    assert merged[-1].name == "Jetson Orin Nano" and merged[-1].kind == "edge"
    assert match_device("orin", merged).name == "Jetson Orin Nano"
    assert by_name["H200"].origin == PACKAGED


@pytest.mark.parametrize(
    ("changes", "top", "message"),
    [
        ({"drop": ["tdp_w"]}, {}, r"device 'K80': missing field 'tdp_w' \(a number in W"),
        (
            {"peak_fp32_tflops": "10 TFLOPS"},
            {},
            r"device 'K80': peak_fp32_tflops='10 TFLOPS': expected a number in TFLOP/s",
        ),
        (
            {"units": {"peak_fp32_tflops": "GFLOP/s"}},
            {},
            r"device 'K80': units.peak_fp32_tflops='GFLOP/s': the catalogue's unit for "
            r"peak_fp32_tflops is 'TFLOP/s'",
        ),
        ({}, {"units": {"memory_bandwidth_gbs": "MB/s"}}, r"units.memory_bandwidth_gbs='MB/s'"),
        ({"tdp_w": -300}, {}, "device 'K80': tdp_w=-300: must be a positive number in W"),
        (
            {"price_usd": 0},
            {},
            "device 'K80': price_usd=0: a price must be positive, or null when unknown",
        ),
        ({"kind": "fpga"}, {}, "kind='fpga': expected one of gpu, tpu, cpu, edge"),
        ({"year": "2014"}, {}, "year='2014': expected a calendar year"),
        ({"memory_gb": True}, {}, "memory_gb=True: expected a number in GB"),
        ({"tdp": 300}, {}, "unknown field 'tdp'"),
    ],
)
def test_bad_entries_name_the_file_device_field_value_and_expectation(
    tmp_path, changes, top, message
):
    path = write_catalog(tmp_path, device_entry(**changes), **top)
    with pytest.raises(ValueError, match=message) as raised:
        load_catalog(path)
    assert str(path) in str(raised.value)


def test_every_figure_needs_a_source(tmp_path):
    entry = device_entry()
    del entry["sources"]["price_usd"]
    with pytest.raises(ValueError, match=r"sources.price_usd=None: every figure needs a source"):
        load_catalog(write_catalog(tmp_path, entry))


def test_names_and_aliases_must_be_unique(tmp_path):
    clash = device_entry(name="My H200", aliases=["NVIDIA H200"])
    with pytest.raises(ValueError, match=r"'nvidia h200' is already used by device 'H200'"):
        load_catalog(write_catalog(tmp_path, clash))
    with pytest.raises(ValueError, match="already used by device 'K80'"):
        parse_catalog(json.dumps({"devices": [device_entry(), device_entry()]}))


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="catalogue file not found"):
        load_catalog(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"devices": [')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON: .* line 1"):
        load_catalog(broken)
    with pytest.raises(ValueError, match=r'expected a JSON object with a "devices" list'):
        parse_catalog("[]", source="list.json")


def test_device_spec_helpers(catalog):
    v100 = catalog["V100"]
    assert v100.best_low_precision == ("FP16/BF16", 125)
    assert catalog["K80"].best_low_precision is None
    assert "V100" in repr(v100) and "125 FP16/BF16" in repr(v100)
    assert json.loads(json.dumps(v100.to_dict()))["sources"]["peak_fp16_tflops"]
    with pytest.raises(ValueError, match="figure must be one of"):
        v100.source("speed")
    assert isinstance(v100, DeviceSpec) and hash(v100)


def test_plot_catalog_rejects_a_non_png_path(tmp_path):
    with pytest.raises(ValueError, match=r"path must end in .png"):
        plot_catalog(load_catalog(), tmp_path / "catalog.jpg")


def test_catalog_command_writes_a_png_and_leaves_no_temp_file(tmp_path):
    result = CliRunner().invoke(hw_app, ["catalog", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Raspberry Pi 4" in result.output and "GFLOPS/W" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.png"]
    with Image.open(tmp_path / "catalog.png") as image:
        assert image.format == "PNG" and image.width > 1000


def test_catalog_command_json_with_a_user_file(tmp_path):
    path = write_catalog(tmp_path, device_entry(name="Jetson Orin Nano", aliases=[], year=2023))
    result = CliRunner().invoke(
        hw_app, ["catalog", "--catalog", str(path), "--out", str(tmp_path / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["units"] == UNITS and data["png"].endswith("catalog.png")
    jetson = data["devices"][-1]
    assert jetson["name"] == "Jetson Orin Nano" and jetson["origin"] == str(path)
    assert math.isclose(jetson["effectiveness"]["eta_fp32_gflops_per_w"], 20)


def test_catalog_command_bad_file_is_one_line_and_exit_2(tmp_path):
    path = write_catalog(tmp_path, device_entry(price_usd=0))
    result = CliRunner().invoke(hw_app, ["catalog", "--catalog", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "price_usd=0: a price must be positive, or null when unknown" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "catalog.png").exists()
