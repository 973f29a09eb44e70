"""Crash-safe file output: write to a temporary file, then rename over the target.

``os.replace`` is atomic on POSIX and Windows when source and target are on the same file system, so the temporary
file is created in the target's own folder. A reader therefore sees either the complete old file or the complete
new one, never a half-written file; when the writer fails (exception, Ctrl-C, SIGTERM turned into an exception by the
command line) the temporary file is deleted and an existing file at the target path is left untouched.

Temporary files are named ``.NAME.p<pid>.<random><suffix>``. A process killed with SIGKILL cannot clean up, so every
new write to ``NAME`` first removes the temporaries of ``NAME`` whose writing process no longer exists (those of a
live concurrent writer are kept). An existing target that is read-only is never replaced (PermissionError).
"""
from __future__ import annotations

import glob
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _fsync_path(path, directory: bool = False):
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # directories cannot be opened on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(path, suffix: str = ".tmp") -> list[Path]:
    """Remove the temporaries of ``path`` left by writers that no longer run; returns the removed paths."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    removed = []
    for tmp in folder.glob(f".{glob.escape(path.name)}.p*{suffix}"):
        pid_part = tmp.name[len(path.name) + 3:].split(".", 1)[0]
        if pid_part.isdigit() and not _alive(int(pid_part)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


@contextmanager
def atomic_output(path, suffix: str = ".tmp"):
    """Context manager yielding a temporary path next to ``path``; on success it is fsynced and renamed to ``path``.

    Usage::

        with atomic_output("showers.h5") as tmp:
            with h5py.File(tmp, "w") as f:
                ...

    The final file gets the permissions of the file it replaces, or the default ``0o666 & ~umask`` for a new one.
    On any exception the temporary file is removed and the exception propagates.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file path")
    if path.exists() and not (path.stat().st_mode & 0o222):  # no write bit for anyone (root included)
        raise PermissionError(f"{path}: the existing file is read-only; not replaced (make it writable or remove it)")
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: the writer removed its temporary file {tmp}")
        if path.exists():
            mode = path.stat().st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(folder, directory=True)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
