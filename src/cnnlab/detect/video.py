"""Video files for ``cnnlab detect``: frames read, and the annotated video written, by PyAV.

Why PyAV (the ``video`` extra: ``pip install 'cnnlab[video]'``) rather than imageio with
imageio-ffmpeg: one package, whose 36 MB wheel carries FFmpeg's libraries (imageio-ffmpeg's
wheel is 68 MB, an ffmpeg executable, and imageio comes on top); it decodes and encodes in this
process, where imageio pipes raw frames to and from an ffmpeg subprocess; it releases the GIL
while it codes, so that ``detect_frames``' second thread encodes while torch runs; and its
frame iterator is plain (``container.decode(stream)``, ``frame.to_ndarray(format="rgb24")``).

The annotated video is an H.264 MP4 (libx264, yuv420p, the input's frame rate), written to a
temporary name and renamed into place when complete, so an interrupted run leaves no half file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from cnnlab.detect.draw import draw_boxes

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
)
DEFAULT_RATE = Fraction(25)  # frames per second when the input does not say
CODEC, PIXEL_FORMAT = "libx264", "yuv420p"  # what every player plays
CODEC_OPTIONS = {"preset": "veryfast", "crf": "20"}  # a few ms a frame; boxes stay sharp


def is_video(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av() -> ModuleType:
    try:
        import av
    except ImportError as error:
        from cnnlab.deploy.extras import MissingExtraError  # an ImportError and a ValueError

        raise MissingExtraError(
            f"reading and writing video needs the package 'av' (PyAV), which is not installed "
            f"({error}): pip install 'cnnlab[video]' (or pip install av)"
        ) from None
    return av


def _open_input(path: Path):
    av = _av()
    if not path.is_file():
        raise FileNotFoundError(f"No such video file: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise ValueError(f"{path} is not a video FFmpeg can read ({error})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} holds no video stream: expected a video file")
    return container


def video_rate(path: str | os.PathLike[str]) -> Fraction:
    """The video's frames per second (its average rate; 25 when the file does not say)."""
    with _open_input(Path(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
    return Fraction(rate) if rate else DEFAULT_RATE


def video_frames(path: str | os.PathLike[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(the video's path, (H, W, 3) uint8 RGB) for each frame of its first video stream."""
    path = Path(path)
    with _open_input(path) as container:
        for frame in container.decode(container.streams.video[0]):
            yield str(path), frame.to_ndarray(format="rgb24")


class VideoWriter:
    """Draws each frame's boxes and encodes it as the next frame of the MP4 ``path``: a
    ``FrameWriter`` for ``detect_frames``. Odd frame sizes get one black column or row (yuv420p
    needs even ones). ``close()`` finishes the file and renames it into place."""

    def __init__(
        self, path: Path, names: list[str], classes: int, rate: Fraction = DEFAULT_RATE
    ) -> None:
        self.path, self.names, self.classes, self.rate = Path(path), names, classes, rate
        self._partial = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial.mp4")
        self._container = self._stream = None
        self.frames = 0

    def __repr__(self) -> str:
        return f"VideoWriter({str(self.path)!r}, {self.frames} frames at {float(self.rate):g} FPS)"

    def _open(self, width: int, height: int) -> None:
        av = _av()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._partial), mode="w", format="mp4")
        self._stream = self._container.add_stream(CODEC, rate=self.rate, options=CODEC_OPTIONS)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = PIXEL_FORMAT

    def __call__(self, name: str, pixels: np.ndarray, rows: torch.Tensor) -> Path:
        drawn = draw_boxes(Image.fromarray(pixels), rows, self.names, self.classes)
        width, height = drawn.width + drawn.width % 2, drawn.height + drawn.height % 2
        if drawn.size != (width, height):
            even = Image.new("RGB", (width, height))
            even.paste(drawn)
            drawn = even
        if self._container is None:
            self._open(width, height)
        elif (width, height) != (self._stream.width, self._stream.height):
            raise ValueError(
                f"{name}: frame {self.frames} is {drawn.width}x{drawn.height}, the video's "
                f"frames {self._stream.width}x{self._stream.height}: expected one frame size"
            )
        frame = _av().VideoFrame.from_ndarray(np.asarray(drawn), format="rgb24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1
        return self.path

    def close(self) -> Path | None:
        """Flush the encoder, close the file and move it to ``path`` (None: no frames)."""
        if self._container is None:
            return None
        self._container.mux(self._stream.encode(None))
        self._container.close()
        self._container = None
        os.replace(self._partial, self.path)
        return self.path

    def discard(self) -> None:
        """Close and delete the partial file (after an error)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self._partial.unlink(missing_ok=True)
