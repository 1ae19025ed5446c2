"""Atomic file writes: temp file in the same directory, fsync, rename, permissions kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .sessions import pid_alive

TEMP_MARK = ".cptmp-"


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) with mode 0700; tighten an existing one we own."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError:
        pass


def atomic_write(path: Path, data: bytes, *, mode: int | None = None,
                 follow_symlink: bool = True) -> os.stat_result:
    """Replace `path` with `data` atomically; returns the stat of the file written (the rename
    keeps its inode, size and mtime, so it identifies exactly these bytes).

    A symlink is resolved so the link stays a link and its target is replaced. The file keeps
    its current permission bits unless `mode` is given (new files get `mode` or 0600).
    """
    target = Path(os.path.realpath(path)) if follow_symlink else path
    directory = target.parent
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o600
    tmp = directory / f"{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}-{target.name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have masked bits off
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            written_stat = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return written_stat


def _writer_alive(name: str) -> bool:
    """Temp names carry the writer's pid: `.cptmp-<pid>-<random>-<file>`."""
    try:
        pid = int(name[len(TEMP_MARK):].split("-", 1)[0])
    except ValueError:
        return False
    return pid == os.getpid() or pid_alive(pid)


def clean_stale_temps(directory: Path | str, older_than: float = 600.0) -> int:
    """Remove temp files a killed run left behind: its writer is dead (or it is very old)."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TEMP_MARK):
            continue
        try:
            if not _writer_alive(entry.name) or now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    return removed


class TempSweeper:
    """Sweeps the temp files a killed writer left in the folders a run writes to (the pool's,
    Claude Code's): providers/world.py `Temps`."""

    def __init__(self, *directories: Path | str) -> None:
        self.directories = directories

    def sweep(self) -> int:
        return sum(clean_stale_temps(d) for d in self.directories)
