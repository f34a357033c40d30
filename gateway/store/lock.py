"""One gateway per store: an exclusive lock on a file inside the store directory, held for the process's life.

Two gateways on one store would both recover the same in-flight segments and send them twice, and the
second one's exit would remove the first one's upstream socket. LMDB itself allows several writer processes,
so the store cannot refuse them on its own.

`flock` (not `fcntl` record locks): the kernel drops it when the holder dies, however it dies, so a SIGKILLed
gateway never leaves a lock that needs clearing by hand; and it belongs to the open file, not the process, so
a second lock attempt in the same process (two `Gateway`s in one test) is refused too. The lock file records
the holder's pid, for the error message only; its presence means nothing.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gateway.errors import GatewayError

LOCK_NAME = "gateway.lock"


class StoreInUse(GatewayError):
    """Another gateway holds the store."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f" (pid {pid})" if pid is not None else ""
        super().__init__(f"{path}: in use by another gateway{holder}")


class StoreLock:
    """The held lock; `release()` (or the process ending) frees it."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file drops the flock
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_store(path: str | os.PathLike[str]) -> StoreLock:
    """Take the store directory's lock (the directory must exist) or raise StoreInUse naming the holder.

    O_CLOEXEC: the store writer child must not inherit it, or the lock would outlive a gateway whose child
    lingered."""
    directory = os.fspath(path)
    fd = os.open(Path(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    locked = False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except BlockingIOError:
        raise StoreInUse(directory, _read_pid(fd)) from None
    finally:
        if not locked:
            os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StoreLock(directory, fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
