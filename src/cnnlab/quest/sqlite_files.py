"""The SQLite file that holds the answer key: readable by its owner only, and never half made.

``quest init`` builds the database in a private temporary file beside the one asked for and moves
it into place only once the competition is in it (a hard link, which never replaces a file that
appeared in the meantime). A failure on the way (a full disk, a bad label, Ctrl-C) leaves what
was there before: no file, or an empty one.

Permissions: the temporary file is created 0600 before SQLite opens it, under a 0077 umask, and
SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, so none of them is
ever readable by another user. ``restrict_permissions`` tightens a database made before this
rule (0644), and its side files, when the server or a command opens it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from cnnlab.runtime.files import fsync_directory

PRIVATE_MODE = 0o600
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def side_files(path: Path) -> list[Path]:
    """The files SQLite keeps next to a database: its write-ahead log, shared memory, journal."""
    return [path.with_name(path.name + suffix) for suffix in SIDE_SUFFIXES]


def restrict_permissions(path: Path) -> None:
    """Make the database and its side files 0600 where group or others may read them.

    Only the owner can change a file's mode; another user's file is left as it is.
    """
    for file in (path, *side_files(path)):
        try:
            status = file.stat()
        except FileNotFoundError:
            continue
        if stat.S_IMODE(status.st_mode) & 0o077 and status.st_uid == os.geteuid():
            os.chmod(file, PRIVATE_MODE)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created in the block are readable by their owner only (the umask is per process)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def is_empty_file(path: Path) -> bool:
    """A regular file of 0 bytes: what ``touch`` or an interrupted SQLite open leaves."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_size == 0


def is_new_file(path: Path) -> bool:
    """No file at ``path`` yet, or an empty one, in a folder this user may write (or create);
    ``PermissionError`` naming the folder otherwise."""
    if path.exists():
        return is_empty_file(path)
    folder = next(folder for folder in path.parents if folder.exists())
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))
    return True


@contextlib.contextmanager
def building(path: Path) -> Iterator[Path]:
    """A new private file beside ``path`` to build the database in; moved to ``path`` when the
    block succeeds, removed (with its side files and any folder made for it) when it fails.

    ``FileExistsError`` when ``path`` appeared while building and is not an empty file.
    """
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with private_umask():
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE))
            yield temporary
        left = [file.name for file in side_files(temporary) if file.exists()]
        if left:  # the last connection's close checkpoints the log; without it data is missing
            raise OSError(f"SQLite left {', '.join(left)} behind: the database is incomplete")
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        _publish(temporary, path)
    except BaseException:
        for file in (temporary, *side_files(temporary)):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
        for folder in made:  # innermost first; a folder someone filled meanwhile stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    fsync_directory(path.parent)


def _publish(temporary: Path, path: Path) -> None:
    """Move ``temporary`` to ``path`` without replacing a file another process put there."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        if not is_empty_file(path):
            raise
        os.replace(temporary, path)
    except OSError:  # a file system without hard links
        if path.exists() and not is_empty_file(path):
            raise FileExistsError(path) from None
        os.replace(temporary, path)
