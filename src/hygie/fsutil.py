"""Durable file writes shared by backups, key files and retention: new files only, fsynced.

A file written here is created with ``O_EXCL`` (an existing file is never replaced or edited in
place), mode 0600, and flushed to disk before the call returns; callers fsync the directory
after a rename so the new name survives a crash too.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (0600) with ``data``, never replacing an existing file; fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy_new(src: Path, dest: Path, *, patch: tuple[int, bytes] | None = None) -> int:
    """Copy ``src`` into the new file ``dest`` (0600, fsynced; never replacing a file), with
    ``patch`` (offset, bytes) written over the copy; the size copied.

    The kernel copies (``copy_file_range``: nothing goes through Python) where the file system
    allows it, else a plain read/write loop."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with src.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if _kernel_copy(f.fileno(), fd, size) < size:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                f.seek(0)
                while chunk := f.read(8 << 20):
                    write_all(fd, chunk)
        if patch:
            os.pwrite(fd, patch[1], patch[0])
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def _kernel_copy(src_fd: int, dest_fd: int, size: int) -> int:
    """Bytes copied by ``copy_file_range`` (0 where the kernel or file system has none)."""
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src_fd, dest_fd, min(1 << 30, size - done))
            if n == 0:
                break
            done += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL) or done:
            raise
    return done


def fsync_file(path: Path) -> None:
    """Make an existing file 0600 and flush it to disk."""
    os.chmod(path, 0o600)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
