"""Files: regular files read without ever hanging, and atomic writes that respect what the user
made read-only or linked (docs/ARCHITECTURE.md §7).

Reading (`read_regular`, `read_text`): the path is checked with stat before it is opened, opened
non-blocking, and the opened descriptor checked again, so a FIFO, a device or a directory in the
place of one of our files is one clear error (`NotRegularFile`, an OSError) instead of a hang.
Writing (`atomic_write`): temp file in the target's own directory, fsync, rename; a symlink (a
chain, a relative one) is resolved so the link stays a link and its target gets the bytes; with
`respect=True` (files we share with Claude Code and the user) a target that is read-only, not
ours, or in a folder we cannot write is refused (`WriteRefused`), never replaced.

Standard library only, and no pathlib at import: the hot paths (`status`, the hooks) read through it.
"""

from __future__ import annotations

import errno
import os
import stat
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a hot path)
if TYPE_CHECKING:
    from pathlib import Path

TEMP_MARK = ".cptmp-"
#: the most a file of ours (or Claude Code's) can sensibly hold; a larger one is refused, not read
READ_LIMIT = 64 << 20
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, for a message."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symlink that leads nowhere (a loop)"
    return "not a regular file"


class NotRegularFile(OSError):
    """A FIFO, a device, a directory... where one of our files should be: never opened for a read
    that could hang, never replaced."""

    def __init__(self, path: "str | os.PathLike[str]", mode: int) -> None:
        self.kind = kind_of(mode)
        super().__init__(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                         f"it is {self.kind}, not a regular file; move it aside", os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename} is {self.kind}, not a regular file; move it aside"


class FileTooLarge(OSError):
    def __init__(self, path: "str | os.PathLike[str]", limit: int) -> None:
        super().__init__(errno.EFBIG, f"it is larger than {limit >> 20} MiB, too large to be ours; move it aside",
                         os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class WriteRefused(OSError):
    """A file the user made read-only, that is not ours, or whose folder we cannot write: left as
    it is (`atomic_write(respect=True)`). `filename` is the file that would have been replaced (a
    link's target), `link` the path we were asked to write when that was a symlink."""

    def __init__(self, target: str, why: str, link: str | None = None) -> None:
        super().__init__(errno.EACCES, why, target)
        self.link = link

    def where(self) -> str:
        """The path as the user knows it, and the link's target when there is one."""
        return f"{self.link} (a link to {self.filename})" if self.link else str(self.filename)

    def __str__(self) -> str:
        return f"{self.where()} {self.strerror}"


def read_regular_stat(path: "str | os.PathLike[str]", limit: int = READ_LIMIT) -> "tuple[bytes, os.stat_result] | None":
    """The bytes of a regular file and the fstat of the very file they came from; None when it
    does not exist. Anything else in its place raises NotRegularFile, before any blocking open."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, st.st_mode)
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:  # removed since the stat
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped since the stat
            raise NotRegularFile(path, st.st_mode)
        if st.st_size > limit:
            raise FileTooLarge(path, limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, max(st.st_size - size + 1, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FileTooLarge(path, limit)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def read_regular(path: "str | os.PathLike[str]", limit: int = READ_LIMIT) -> bytes | None:
    """A regular file's bytes, None when it does not exist (see `read_regular_stat`)."""
    found = read_regular_stat(path, limit)
    return None if found is None else found[0]


def read_text(path: "str | os.PathLike[str]", limit: int = READ_LIMIT) -> str:
    """`open(path).read()` that never hangs: FileNotFoundError when missing, NotRegularFile for a
    FIFO or a device, UnicodeDecodeError for bytes that are not UTF-8."""
    data = read_regular(path, limit)
    if data is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(path))
    return data.decode("utf-8")


# What to do about an OSError on one of our files: the one place these words live, for every
# error line that names a file (reconciler/cli.py `error_line`, the providers' messages).
def explain(exc: OSError, verb: str = "write") -> str:
    """`REASON; WHAT TO DO` for an OSError on a file (no path in it: the caller names the file)."""
    if isinstance(exc, (NotRegularFile, FileTooLarge, WriteRefused)):
        return str(exc.strerror)
    code = exc.errno
    reason = exc.strerror or type(exc).__name__
    folder = os.path.dirname(os.fspath(exc.filename)) if exc.filename else ""
    if code in (errno.EACCES, errno.EPERM):
        if verb == "read":
            return f"{reason}; make it readable by you (`ls -l` shows who owns it)"
        if exc.filename and os.path.isdir(exc.filename):
            return f"{reason}; make that folder writable by you (`ls -ld` shows who owns it)"
        return f"{reason}; make it{' and its folder ' + folder if folder else ''} writable by you " \
               "(`ls -ld` shows who owns them)"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"{reason}; free some disk space and run again"
    if code == errno.EROFS:
        return f"{reason}; the file system is read-only: remount it, or point HOME (or CLAUDE_POOL_CONFIG_DIR, " \
               "CLAUDE_CONFIG_DIR) at a writable folder"
    if code == errno.ENOTDIR:
        return f"{reason}; a part of the path is a file where a folder should be: move it aside"
    if code == errno.EISDIR:
        return f"{reason}; it is a directory: move it aside"
    if code == errno.ELOOP:
        return f"{reason}; fix the symlink"
    if code == errno.ENOENT:
        return f"{reason}; a folder on the way is missing"
    return f"{reason}; check the path and its permissions, then run again"


def describe(exc: OSError, verb: str = "write", path: "str | os.PathLike[str] | None" = None) -> str:
    """`cannot VERB PATH: REASON; WHAT TO DO`."""
    where = exc.where() if isinstance(exc, WriteRefused) else os.fspath(path or exc.filename or "?")
    return f"cannot {verb} {where}: {explain(exc, verb)}"


def ensure_private_dir(path: "Path | str") -> None:
    """Create `path` (and parents) with mode 0700; tighten an existing one we own."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError:
        pass


def _refusal(target: str, st: "os.stat_result | None", directory: str) -> str:
    """Why a shared file must not be replaced ('' when it may be)."""
    geteuid = getattr(os, "geteuid", None)
    if st is not None:
        if geteuid is not None and st.st_uid != geteuid():
            return f"belongs to another user (uid {st.st_uid})"
        if not st.st_mode & stat.S_IWUSR:
            return f"is read-only (mode {stat.S_IMODE(st.st_mode):04o})"
    while not os.path.isdir(directory):   # a folder still to be made: the nearest one that exists
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"is in a folder you cannot write ({directory})"
    return ""


def check_respected(path: "Path | str") -> None:
    """Raise what `atomic_write(path, ..., respect=True)` would refuse with, before anything is
    done that only makes sense if the write can follow (say, a token refresh)."""
    asked = os.fspath(path)
    target = os.path.realpath(asked)
    try:
        st: os.stat_result | None = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(target, st.st_mode)
    why = _refusal(target, st, os.path.dirname(target) or ".")
    if why:
        raise WriteRefused(target, why, asked if asked != target else None)


def atomic_write(path: "Path | str", data: bytes, *, mode: int | None = None,
                 follow_symlink: bool = True, respect: bool = False) -> os.stat_result:
    """Replace `path` with `data` atomically; returns the stat of the file written (the rename
    keeps its inode, size and mtime, so it identifies exactly these bytes).

    A symlink (a chain of them, relative or absolute) is resolved so the link stays a link and its
    final target is replaced, by a temp file in the target's own directory. The file keeps its
    current permission bits unless `mode` is given (new files get `mode` or 0600). Something that
    is not a regular file in the target's place (a FIFO, a device, a directory) is never replaced
    (NotRegularFile). `respect=True`, for the files we share with Claude Code and the user: a
    target that is read-only, belongs to another user, or sits in a folder we cannot write is
    left as it is (WriteRefused): the user made it so.
    """
    asked = os.fspath(path)
    target = os.path.realpath(asked) if follow_symlink else asked
    directory = os.path.dirname(target) or "."
    try:
        st: os.stat_result | None = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode) and (follow_symlink or not stat.S_ISLNK(st.st_mode)):
        raise NotRegularFile(target, st.st_mode)
    if respect:
        why = _refusal(target, st if st is not None and stat.S_ISREG(st.st_mode) else None, directory)
        if why:
            raise WriteRefused(target, why, asked if asked != target else None)
    if mode is None:
        mode = stat.S_IMODE(st.st_mode) if st is not None and stat.S_ISREG(st.st_mode) else 0o600
    tmp = os.path.join(directory, f"{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}-{os.path.basename(target)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    except OSError as exc:   # name the file we were writing, not our temp file
        raise OSError(exc.errno, exc.strerror, target) from None
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have masked bits off
            write_all(fd, data)
            os.fsync(fd)
            written_stat = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, (NotRegularFile, WriteRefused)):
            raise OSError(exc.errno, exc.strerror, target) from None
        raise
    fsync_dir(directory)
    return written_stat


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd` (os.write may write less than it was given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(directory: str) -> None:
    """Make a rename in `directory` durable (best effort: not every system can)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _writer_alive(name: str) -> bool:
    """Temp names carry the writer's pid: `.cptmp-<pid>-<random>-<file>`."""
    from .sessions import pid_alive

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
