"""Downloads that resume, verify, and never leave a bad file where a good one is expected.

``download`` streams with the standard library's ``urllib`` into ``DEST.part``. A ``.part`` left
by an interrupted download is resumed with an HTTP ``Range`` request; if the server ignores the
range, or the resumed file fails its checksum, the download restarts cleanly from byte 0. Only a
verified file is renamed into place (``os.replace``, atomic on one file system), so an existing
``DEST`` is never touched by a failed download.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from http.client import HTTPException
from pathlib import Path

# (file name, bytes done, bytes in total or None)
ProgressCallback = Callable[[str, int, "int | None"], None]

CHUNK = 1 << 16
USER_AGENT = "cnnlab (dataset fetch)"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def download(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    decoded_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``url`` into ``dest`` and return ``dest``.

    With ``md5`` and/or ``decoded_sha256`` the result must match at least one of them (MD5 of
    the bytes as downloaded, or SHA-256 after gunzip); otherwise the download is deleted and a
    ``ValueError`` names the file and the checksums. A dropped connection raises
    ``ConnectionError`` and keeps ``DEST.part`` for the next call to resume.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = _fetch(url, part, progress=progress, timeout=timeout)
    problem = checksum_problem(part, md5=md5, decoded_sha256=decoded_sha256)
    if problem and resumed:
        # The old partial file may belong to another version of the file: start again once.
        part.unlink(missing_ok=True)
        _fetch(url, part, progress=progress, timeout=timeout)
        problem = checksum_problem(part, md5=md5, decoded_sha256=decoded_sha256)
    if problem:
        part.unlink(missing_ok=True)
        raise ValueError(
            f"checksum mismatch for {dest.name} downloaded from {url}: {problem}. "
            f"The bad download was deleted; nothing at {dest} was changed"
        )
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, *, progress: ProgressCallback | None, timeout: float) -> bool:
    """Append the rest of ``url`` to ``part`` (or write it whole); True if it resumed."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            # "Range not satisfiable": the .part is complete already, or longer than the file.
            # Either way the checksum decides; an invalid one restarts from byte 0.
            return True
        raise ConnectionError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionError(f"{url}: cannot connect ({reason})") from None

    with response:
        start, total = _response_span(response, offset)
        if start not in (0, offset):
            part.unlink(missing_ok=True)
            raise ConnectionError(
                f"{url}: asked for bytes from {offset:,}, the server sent bytes from {start:,}; "
                "the partial download was deleted, so the next download starts afresh"
            )
        offset = start  # 0 when the server ignored the range and sent the whole file
        done = offset
        try:
            with open(part, "ab" if offset else "wb") as file:
                while chunk := response.read(CHUNK):
                    file.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(part.name.removesuffix(".part"), done, total)
                file.flush()
                os.fsync(file.fileno())
        except (OSError, HTTPException) as error:
            raise ConnectionError(
                f"download of {url} stopped after {done:,} bytes ({error}); "
                f"{part} is kept and the next download resumes from there"
            ) from None
    if total is not None and done < total:
        raise ConnectionError(
            f"download of {url} stopped after {done:,} of {total:,} bytes; "
            f"{part} is kept and the next download resumes from there"
        )
    return offset > 0


def _response_span(response, offset: int) -> tuple[int, int | None]:
    """(first byte sent, total size of the file or None) from the response headers."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match:
            first = int(match.group(1))
            total = None if match.group(3) == "*" else int(match.group(3))
            return first, total
        return offset, None if length is None else offset + length
    return 0, length


def checksum_problem(
    path: Path, *, md5: str | None = None, decoded_sha256: str | None = None
) -> str:
    """ "" if ``path`` matches ``md5`` or ``decoded_sha256`` (or neither is given); otherwise
    what was expected and what was found, for an error message."""
    if md5 is None and decoded_sha256 is None:
        return ""
    found_md5 = file_md5(path) if md5 else None
    if md5 and found_md5 == md5.lower():
        return ""
    found_sha = decoded_content_sha256(path) if decoded_sha256 else None
    if decoded_sha256 and found_sha == decoded_sha256.lower():
        return ""
    parts = []
    if md5:
        parts.append(f"expected MD5 {md5}, got {found_md5}")
    if decoded_sha256:
        parts.append(f"expected SHA-256 of the decoded content {decoded_sha256}, got {found_sha}")
    return "; ".join(parts)


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def decoded_content_sha256(path: Path) -> str:
    """SHA-256 of the file's content after gunzip (of the file itself if not gzip);
    "unreadable (...)" when the gzip stream is broken."""
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as error:
        return f"unreadable ({error})"
    return digest.hexdigest()


@contextlib.contextmanager
def terminal_progress() -> Iterator[ProgressCallback | None]:
    """Rich progress bars (one per file) on stderr when stderr is a terminal; None otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        yield update
