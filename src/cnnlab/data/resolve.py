"""Where a dataset's files are: resolved in order, never assumed (DESIGN principle 4).

1. an explicit ``data_dir`` (the files directly in it, or in ``data_dir/<name>/``);
2. the cache, ``$CNNLAB_HOME/datasets/<name>/`` (``CNNLAB_HOME`` defaults to ``~/.cache/cnnlab``);
3. system dataset folders, ``/usr/share/datasets/<name>/`` (Debian's ``dataset-*`` packages);
4. a download from the catalogue's mirrors, in order, into the cache.

A file may be present as published (``.gz``) or uncompressed (the same name without ``.gz``).
A copy in the cache or a system folder is verified against the catalogue's checksums before it
is used: a corrupt copy is skipped (and said so in ``ResolvedDataset.skipped``), and the next
source is tried. Verified files are remembered (``verified.json`` in the cache, by path, size
and modification time), so a file is hashed once, not on every run.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.catalog import FOLDER_PREFIX, DataFormat, DatasetEntry, get_entry, list_datasets
from cnnlab.data.download import ProgressCallback, checksum_problem, download

SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
SOURCES = ("data-dir", "cache", "system", "download", "bundled")


def cnnlab_home() -> Path:
    """``$CNNLAB_HOME``, or ``~/.cache/cnnlab`` when it is unset or empty."""
    return Path(os.environ.get("CNNLAB_HOME") or "~/.cache/cnnlab").expanduser()


def cache_dir(name: str) -> Path:
    """The cache folder of dataset ``name``: ``$CNNLAB_HOME/datasets/<name>``."""
    return cnnlab_home() / "datasets" / name


@dataclass(frozen=True)
class ResolvedDataset:
    """Where a dataset was found. ``files`` follow the catalogue's order (empty if bundled)."""

    name: str
    path: Path
    source: str  # one of SOURCES
    files: tuple[Path, ...] = ()
    skipped: tuple[str, ...] = ()  # copies found corrupt on the way, and why

    def __str__(self) -> str:
        return f"{self.path} ({self.source})"


def resolve_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> ResolvedDataset:
    """Find dataset ``name`` (data_dir, cache, system folders, then a download into the cache).

    Raises ``ValueError`` for an unknown name, ``FileNotFoundError`` when a ``data_dir`` lacks
    files (naming them) or when nothing works (naming the three ways to get the data).
    """
    if name.startswith(FOLDER_PREFIX):
        folder = Path(name.removeprefix(FOLDER_PREFIX)).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"dataset {name!r}: {str(folder)!r} is not a folder. Expected {FOLDER_PREFIX}PATH "
                "with one sub-folder of PNG/JPEG images per class"
            )
        return ResolvedDataset(name, folder, "data-dir")
    entry = get_entry(name)
    if entry.format is DataFormat.SKLEARN_DIGITS:
        return ResolvedDataset(name, _sklearn_data_folder(), "bundled")
    if data_dir is not None:
        return _from_data_dir(entry, Path(data_dir).expanduser())
    skipped: list[str] = []
    for folder, source in _local_folders(name):
        found = _verified_copy(entry, folder, source, skipped)
        if found is not None:
            return found
    if not download:
        raise FileNotFoundError(three_ways_message(entry, "downloading is turned off", skipped))
    return _download_into_cache(entry, progress, skipped)


def fetch_dataset(name: str, *, progress: ProgressCallback | None = None) -> ResolvedDataset:
    """Make sure dataset ``name`` is in the cache, downloading what is missing."""
    if name.startswith(FOLDER_PREFIX):
        raise ValueError(f"name={name!r} is a local folder: there is nothing to fetch")
    entry = get_entry(name)
    if entry.format is DataFormat.SKLEARN_DIGITS:
        return ResolvedDataset(name, _sklearn_data_folder(), "bundled")
    return resolve_dataset(name, progress=progress)  # a verified local copy needs no download


def _verified_copy(
    entry: DatasetEntry, folder: Path, source: str, skipped: list[str]
) -> ResolvedDataset | None:
    """The copy in ``folder`` if it is complete and every file matches the catalogue; a
    corrupt copy is added to ``skipped`` (and, in the cache, removed so a download replaces it)."""
    files, _ = match_files(entry, folder)
    if not files:
        return None
    for data_file, path in zip(entry.files, files, strict=True):
        problem = _checksum_problem_cached(path, data_file.md5, data_file.sha256)
        if problem:
            skipped.append(f"the {source} copy {path} is corrupt ({problem})")
            if source == "cache":
                with contextlib.suppress(OSError):
                    path.unlink()
            return None
    return ResolvedDataset(entry.name, folder, source, files, tuple(skipped))


def _checksum_problem_cached(path: Path, md5: str | None, sha256: str | None) -> str:
    """``checksum_problem``, skipped for a file verified before and unchanged since."""
    stat = path.stat()
    key, identity = str(path.resolve()), [stat.st_size, stat.st_mtime_ns, md5, sha256]
    stamps = _read_stamps()
    if stamps.get(key) == identity:
        return ""
    problem = checksum_problem(path, md5=md5, decoded_sha256=sha256)
    if not problem:
        _write_stamps({**stamps, key: identity})
    return problem


def _stamps_file() -> Path:
    return cnnlab_home() / "datasets" / "verified.json"


def _read_stamps() -> dict[str, list]:
    try:
        stamps = json.loads(_stamps_file().read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _write_stamps(stamps: dict[str, list]) -> None:
    """Best effort: an unwritable cache only means hashing again next time."""
    path = _stamps_file()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(stamps))
        os.replace(temporary, path)


def _download_into_cache(
    entry: DatasetEntry, progress: ProgressCallback | None, skipped: list[str] | None = None
) -> ResolvedDataset:
    try:
        files = download_entry(entry, cache_dir(entry.name), progress=progress)
    except ConnectionError as error:
        raise FileNotFoundError(
            three_ways_message(entry, f"the download failed: {error}", skipped or [])
        ) from None
    return ResolvedDataset(
        entry.name, cache_dir(entry.name), "download", files, tuple(skipped or ())
    )


def _local_folders(name: str) -> list[tuple[Path, str]]:
    return [(cache_dir(name), "cache")] + [(folder / name, "system") for folder in SYSTEM_DIRS]


def _from_data_dir(entry: DatasetEntry, data_dir: Path) -> ResolvedDataset:
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data_dir={str(data_dir)!r} is not a folder. Expected a folder holding the "
            f"{entry.name} files: {', '.join(f.name for f in entry.files)}"
        )
    best: list[str] = []
    for folder in (data_dir, data_dir / entry.name):
        files, missing = match_files(entry, folder)
        if files:
            return ResolvedDataset(entry.name, folder, "data-dir", files)
        if folder == data_dir:
            best = missing
    raise FileNotFoundError(
        f"data_dir={str(data_dir)!r} lacks {len(best)} of the {len(entry.files)} {entry.name} "
        f"files: missing {', '.join(best)} (each as published or without its .gz; "
        f"also looked in {data_dir / entry.name})"
    )


def match_files(entry: DatasetEntry, folder: Path) -> tuple[tuple[Path, ...], list[str]]:
    """(the entry's files found in ``folder``, or () unless all are there; names missing)."""
    found, missing = [], []
    for data_file in entry.files:
        names = [data_file.name]
        if data_file.name.endswith(".gz"):
            names.append(data_file.name.removesuffix(".gz"))
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            missing.append(data_file.name)
        else:
            found.append(path)
    return (tuple(found) if not missing else ()), missing


def download_entry(
    entry: DatasetEntry, folder: Path, *, progress: ProgressCallback | None = None
) -> tuple[Path, ...]:
    """Download the entry's files into ``folder`` (skipping those already there), each from
    the first mirror that delivers a verified copy. Raises ``ConnectionError`` with every
    mirror's reason when a file cannot be had."""
    if not entry.mirrors:
        raise ConnectionError(f"the catalogue lists no download mirror for {entry.name}")
    paths = []
    for data_file in entry.files:
        dest = folder / data_file.name
        if not dest.is_file():
            reasons = []
            for mirror in entry.mirrors:
                try:
                    download(
                        mirror + data_file.name,
                        dest,
                        md5=data_file.md5,
                        decoded_sha256=data_file.sha256,
                        progress=progress,
                    )
                    break
                except (ConnectionError, ValueError) as error:
                    reasons.append(str(error))
            else:
                raise ConnectionError(" | ".join(reasons))
        paths.append(dest)
    return tuple(paths)


def three_ways_message(entry: DatasetEntry, reason: str, skipped: list[str] | None = None) -> str:
    """The error when nothing works: why, then exactly the three ways to get the data."""
    system = ", ".join(str(folder / entry.name) for folder in SYSTEM_DIRS)
    corrupt = "".join(f" ({note})" for note in skipped or ())
    return (
        f"dataset {entry.name!r} is not available: not in the cache ({cache_dir(entry.name)}) "
        f"nor in {system}{corrupt}, and {reason}. Three ways to get it: {how_to_get(entry)}"
    )


def how_to_get(entry: DatasetEntry) -> str:
    """The three ways, numbered, on one line."""
    if entry.debian_package:
        third = (
            f"install Debian's {entry.debian_package} package "
            f"(apt install {entry.debian_package}), which puts the files in "
            f"{SYSTEM_DIRS[0] / entry.name}"
        )
    else:
        which = "that file" if len(entry.files) == 1 else "those files"
        third = f"copy {which} into {cache_dir(entry.name)}"
    return (
        f"(1) pass --data-dir DIR (data_dir= in Python) naming a folder that holds "
        f"{', '.join(f.name for f in entry.files)}; "
        f"(2) run `cnnlab data fetch {entry.name}` on a machine with internet access; (3) {third}"
    )


@dataclass(frozen=True)
class DatasetLocation:
    """One row of ``cnnlab data list``: whether a dataset is here, and where."""

    name: str
    found: bool
    source: str | None
    path: Path | None
    how_to_get: str


def locate_datasets(data_dir: str | Path | None = None) -> list[DatasetLocation]:
    """Every catalogue dataset and where it is found without downloading. ``data_dir`` is a
    folder of per-dataset sub-folders (``data_dir/<name>/``), looked at first: the IDX
    datasets share file names, so files lying directly in it could belong to any of them."""
    rows = []
    for name in list_datasets():
        entry = get_entry(name)
        resolved = None
        if data_dir is not None and entry.files:
            folder = Path(data_dir).expanduser() / name
            files, _ = match_files(entry, folder)
            if files:
                resolved = ResolvedDataset(name, folder, "data-dir", files)
        if resolved is None:
            with contextlib.suppress(FileNotFoundError):
                resolved = resolve_dataset(name, download=False)
        rows.append(
            DatasetLocation(
                name,
                resolved is not None,
                resolved.source if resolved else None,
                resolved.path if resolved else None,
                "" if resolved else how_to_get(entry),
            )
        )
    return rows


def _sklearn_data_folder() -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "data"
