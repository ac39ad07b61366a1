"""`cnnlab detect` on a video file: each frame detected as the same image would be, Darknet's
lines per frame, the FPS line, and the annotated H.264 video with each frame's boxes drawn.

The input video is made here with PyAV, lossless (PNG frames in a QuickTime .mov), so that its
decoded frames are exactly the pixels written: frame i is grey level 20 i with a bright square
whose place moves. The detector is tiny_detector's one-cell yolo: its box depends only on the frame
size (x 25%..75%, y 10%..90% of the frame), the class on nothing, so every frame has it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.detect import Detector
from cnnlab.detect.draw import draw_boxes

from .test_detect_cli import invoke
from .tiny_detector import write_tiny_detector

needs_av = pytest.mark.requires(
    importlib.util.find_spec("av") is None, "PyAV (the video extra, in the dev extra)"
)
FRAMES, WIDTH, HEIGHT, RATE = 12, 400, 250, Fraction(10)
NAMES = "T-shirt/top\nAnkle boot\n"


def frame_pixels(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    pixels = np.full((height, width, 3), 20 * index, dtype=np.uint8)
    x = 8 * index
    pixels[100:160, 2 * x : 2 * x + 60] = (250, 200, 40)
    return pixels


def write_video(path: Path, frames: list[np.ndarray], codec: str = "png") -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=RATE)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "rgb24" if codec == "png" else "yuv420p"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], Fraction, str]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate, stream.codec_context.name


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    cfg, weights = write_tiny_detector(tmp_path, "yolo")
    names = tmp_path / "fashion.names"
    names.write_text(NAMES)
    return {"cfg": cfg, "weights": weights, "names": names, "tmp": tmp_path}


@needs_av
def test_video_frames_are_detected_drawn_and_encoded_in_order(files):
    frames = [frame_pixels(i) for i in range(FRAMES)]
    video = write_video(files["tmp"] / "clip.mov", frames)
    out = files["tmp"] / "drawn"
    args = (files["cfg"], files["weights"], video, "--names", files["names"], "--out", out)
    found = json.loads(invoke(*args, "--json").stdout)
    detector = Detector.from_darknet(files["cfg"], files["weights"])
    detector.names = NAMES.split("\n")[:2]
    assert [f["frame_id"] for f in found] == list(range(1, FRAMES + 1))
    for entry, pixels in zip(found, frames, strict=True):
        assert entry["filename"] == str(video) and entry["png"] is None
        (box,) = entry["objects"]
        (row,) = detector.detect_rgb8(pixels).rows.tolist()
        assert box["class_id"] == int(row[5]) == 1 and box["name"] == "Ankle boot"
        assert box["confidence"] == pytest.approx(row[4], abs=1e-6)
        assert box["relative_coordinates"] == pytest.approx(
            {"center_x": 0.5, "center_y": 0.5, "width": 0.5, "height": 0.8}
        )
    written, rate, codec = read_video(out / "clip.mp4")
    assert (len(written), rate, codec) == (FRAMES, RATE, "h264")
    assert written[0].shape == (HEIGHT, WIDTH, 3)
    rows = detector.detect_rgb8(frames[0]).rows
    expected = [
        np.asarray(draw_boxes(Image.fromarray(p), rows, detector.names, 2), dtype=np.float64)
        for p in frames
    ]
    # the box's left edge: x = 25% of 400, 2 pixels wide (250 * 0.006 rounded), a column of
    # whole 2x2 chroma blocks of yuv420p
    box_edge = np.s_[30:220, 100:102]
    for index, pixels in enumerate(written):
        # H.264 is lossy: each written frame is its own frame drawn, within a few levels, and
        # no other frame (their grey levels are 20 apart)
        errors = [np.abs(pixels - e).mean() for e in expected]
        assert errors[index] < 3 and int(np.argmin(errors)) == index
        # the box's edge is drawn in class 1's colour (0, 255, 128), not the frame's grey
        edge = pixels[box_edge].reshape(-1, 3).astype(np.float64).mean(axis=0)
        assert np.abs(edge - (0, 255, 128)).max() < 40, edge


@needs_av
def test_video_lines_and_fps_as_for_a_folder(files):
    video = write_video(files["tmp"] / "clip.mov", [frame_pixels(i) for i in range(3)])
    out = files["tmp"] / "drawn"
    lines = invoke(files["cfg"], files["weights"], video, "--out", out).stdout.splitlines()
    assert [re.sub(r"\d+\.\d{6}", "S", line) for line in lines[:-1]] == [
        line
        for n in range(1, 4)
        for line in (f"{video} frame {n}: Predicted in S seconds.", "1: 68%")
    ]
    assert re.fullmatch(
        r"3 frames in \d+\.\d\d s: \d+\.\d FPS end to end \(read, letterbox, forward, decode, "
        rf"NMS, draw\); video in {re.escape(str(out / 'clip.mp4'))}",
        lines[-1],
    )
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]  # no partial file left


@needs_av
def test_odd_frame_sizes_get_an_even_video(files):
    video = write_video(files["tmp"] / "odd.mov", [frame_pixels(i, 63, 41) for i in range(2)])
    invoke(files["cfg"], files["weights"], video, "--out", files["tmp"] / "o")
    written, _, _ = read_video(files["tmp"] / "o" / "odd.mp4")
    assert len(written) == 2 and written[0].shape == (42, 64, 3)
    assert written[0][:, 63].max() < 20  # the added column is black


@needs_av
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("{video}", "{image}"), "a video is detected on its own: expected one video file"),
        (("{tmp}/missing.mp4",), r"No such video file: .*missing\.mp4"),
        (("{fake}",), r"fake\.mp4 is not a video FFmpeg can read"),
        (("{video}", "--out", "{tmp}"), "would write the annotated video over its input"),
    ],
)
def test_bad_video_input_is_one_line(files, args, message):
    video = write_video(files["tmp"] / "clip.mp4", [frame_pixels(0)], codec="libx264")
    image = files["tmp"] / "a.png"
    Image.fromarray(frame_pixels(0)).save(image)
    fake = files["tmp"] / "fake.mp4"
    fake.write_text("not a video")
    values = {"video": video, "image": image, "fake": fake, "tmp": files["tmp"]}
    result = invoke(files["cfg"], files["weights"], *(a.format(**values) for a in args), code=2)
    assert re.search(message, " ".join(result.output.split())), result.output


def test_without_pyav_the_error_names_the_extra(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    video = files["tmp"] / "clip.mp4"
    video.write_bytes(b"\0")
    result = invoke(files["cfg"], files["weights"], video, code=2)
    assert "needs the package 'av' (PyAV)" in result.output
    assert "pip install 'cnnlab[video]'" in " ".join(result.output.split())
