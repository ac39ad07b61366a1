"""Kernel presets, parse_kernel and load_input: what users type and the files they give."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from cnnlab.ops import KERNEL_DESCRIPTIONS, KERNELS, conv2d, load_input, parse_kernel

PRESETS = [
    "sharpen",
    "slide-a",
    "slide-b",
    "slide-c",
    "edge",
    "sobel-x",
    "sobel-y",
    "blur",
    "identity",
]


# --- presets -----------------------------------------------------------------------------------


def test_presets_are_read_only_3x3_float_arrays_with_descriptions():
    assert sorted(KERNELS) == sorted(PRESETS)
    assert set(KERNEL_DESCRIPTIONS) == set(KERNELS)
    for kernel in KERNELS.values():
        assert kernel.shape == (3, 3)
        assert kernel.dtype == np.float64
        assert not kernel.flags.writeable


def test_slide_kernels_in_order():
    np.testing.assert_array_equal(KERNELS["sharpen"], [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_array_equal(
        KERNELS["slide-a"], [[-0.2, 0.0, 0.5], [1.0, 0.3, -0.6], [0.0, 0.0, 0.8]]
    )
    np.testing.assert_array_equal(
        KERNELS["slide-b"], [[0.0, 0.0, 0.0], [0.8, -0.5, 0.8], [0.0, -0.2, 0.0]]
    )
    np.testing.assert_array_equal(
        KERNELS["slide-c"], [[0.4, 0.2, -0.2], [-0.8, 0.0, 0.8], [0.0, -0.5, 0.2]]
    )


def _apply(kernel: np.ndarray, image: np.ndarray) -> np.ndarray:
    return conv2d(image[None], kernel[None, None], padding=1)[0]


def test_presets_do_what_their_names_say():
    ramp = np.tile(np.arange(6.0), (6, 1))  # brightness grows left to right
    inside = (slice(1, -1), slice(1, -1))  # away from the zero padding
    np.testing.assert_array_equal(_apply(KERNELS["identity"], ramp), ramp)
    np.testing.assert_allclose(_apply(KERNELS["blur"], ramp)[inside], ramp[inside])
    assert KERNELS["blur"].sum() == pytest.approx(1)
    np.testing.assert_array_equal(_apply(KERNELS["sobel-x"], ramp)[inside], 8)
    np.testing.assert_array_equal(_apply(KERNELS["sobel-y"], ramp)[inside], 0)
    np.testing.assert_array_equal(_apply(KERNELS["edge"], ramp)[inside], 0)  # no edge in a ramp
    np.testing.assert_array_equal(_apply(KERNELS["sobel-y"], ramp.T)[inside], 8)


# --- parse_kernel ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_parse_kernel_presets_give_writable_copies(name):
    kernel = parse_kernel(name)
    np.testing.assert_array_equal(kernel, KERNELS[name])
    kernel[0, 0] = 42  # the caller's copy, not the preset
    assert KERNELS[name][0, 0] != 42


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,-1,0;-1,5,-1;0,-1,0", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
        (" 0 , -1 , 0 ;\n -1, 5, -1 ; 0,-1,0 ", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
        ("1,2;3,4;", [[1, 2], [3, 4]]),
        ("0.5, -1e-1, 2", [[0.5, -0.1, 2]]),
        ("7", [[7]]),
        ("  Sobel-X ", KERNELS["sobel-x"]),
    ],
)
def test_parse_kernel_matrices(text, expected):
    kernel = parse_kernel(text)
    assert kernel.dtype == np.float64
    np.testing.assert_array_equal(kernel, expected)


PRESET_LIST = "Presets: blur, edge, identity, sharpen, slide-a, slide-b, slide-c, sobel-x, sobel-y."


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("1,2;3", "row 2 has 1 value but row 1 has 2 values"),
        ("1,2,3;4,5", "row 2 has 2 values but row 1 has 3 values"),
        ("1,x;3,4", "row 1 has 'x', which is not a number"),
        ("1,,2", "row 1 has '', which is not a number"),
        ("1;;2", "row 2 is empty"),
        (";", "row 1 is empty"),
        ("1,inf", "row 1 has a value that is not finite"),
        ("sobelx", "'sobelx' is not a preset (did you mean 'sobel-x'?)"),
        ("banana", "'banana' is not a preset"),
        (None, "it is not a string"),
    ],
)
def test_parse_kernel_errors_name_the_problem_the_format_and_the_presets(text, problem):
    with pytest.raises(ValueError) as info:
        parse_kernel(text)
    message = str(info.value)
    assert message.startswith(
        "kernel must be a preset name or a matrix like '0,-1,0;-1,5,-1;0,-1,0' "
        "(rows separated by ';', values by ',')"
    )
    assert problem in message
    assert PRESET_LIST in message
    assert message.endswith(f"Received: kernel={text!r}")


# --- load_input --------------------------------------------------------------------------------


def test_load_npy_2d_and_3d(tmp_path):
    image = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.save(tmp_path / "a.npy", image)
    loaded = load_input(tmp_path / "a.npy")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, image)
    rgb = np.random.default_rng(0).random((3, 5, 6))
    np.save(tmp_path / "rgb.npy", rgb)
    np.testing.assert_array_equal(load_input(str(tmp_path / "rgb.npy")), rgb)


def test_load_csv(tmp_path):
    (tmp_path / "a.csv").write_text("60,113,56\n73, 121, 54\n")
    np.testing.assert_array_equal(load_input(tmp_path / "a.csv"), [[60, 113, 56], [73, 121, 54]])
    (tmp_path / "row.csv").write_text("1,2,3\n")
    assert load_input(tmp_path / "row.csv").shape == (1, 3)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_load_png_as_grayscale(tmp_path, mode):
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))  # (8, 16)
    pixels = gray if mode == "L" else np.stack([gray] * 3, axis=-1)
    Image.fromarray(pixels, mode=mode).save(tmp_path / "a.png")
    loaded = load_input(tmp_path / "a.png")
    assert loaded.shape == (8, 16)
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, gray)


def test_missing_file_is_file_not_found(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match=re.escape(f"Received: input={str(path)!r}")):
        load_input(path)


def test_folder_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=re.escape("input must be a file, not a folder")):
        load_input(tmp_path)


def _write(path, content: bytes | str | np.ndarray):
    if isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=True)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("garbage.png", b"\x00\x01not an image at all", "could not be read"),
        ("notes.txt", "hello", "could not be read"),
        ("garbage.npy", b"not numpy", "could not be read"),
        ("objects.npy", np.array([{"a": 1}], dtype=object), "could not be read"),
        ("header.csv", "a,b\n1,2\n", "could not be read"),
        ("ragged.csv", "1,2\n3\n", "could not be read"),
        ("empty.csv", "", "non-empty 2D array"),
        ("vector.npy", np.arange(3.0), "got shape (3,)"),
        ("4d.npy", np.ones((1, 1, 2, 2)), "got shape (1, 1, 2, 2)"),
        ("nan.csv", "1,nan\n2,3\n", "NaN or infinite"),
    ],
)
def test_unreadable_input_names_input_the_path_and_the_formats(tmp_path, name, content, problem):
    path = _write(tmp_path / name, content)
    with pytest.raises(ValueError) as info:
        load_input(path)
    message = str(info.value)
    assert message.startswith("input ")
    assert problem in message
    assert message.endswith(f"Received: input={str(path)!r}")
    if problem != "NaN or infinite":
        assert "Accepted formats: .npy (2D, or 3D with channels first), .csv" in message
