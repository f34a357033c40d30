"""The store's writer process: `python -m gateway.store.worker FD PARENT_PID`, started by `WriterProcess`.

It owns every write transaction of one store, so the Python work of a group commit (unpacking and
packing records, keeping indexes) runs on another core than the gateway's event loop. The gateway keeps
its own read-only handle on the same LMDB environment (LMDB is built for one writer process and many
readers). On the socket `FD`, frames are a 4-byte big-endian length and a msgpack body:

    gateway -> worker   the StoreConfig fields and now_ms (first frame)
    worker -> gateway   [last_seq, resent, unknown] once recovery is done, or [None, error message]
    gateway -> worker   a group (wire.pack_request);   worker -> gateway   its results (wire.pack_reply)

End of file on the socket is a clean stop. The worker dies with the gateway: a watcher thread waits on the
gateway's pid (a pidfd, or by polling the parent pid where pidfds are missing) and ends this process when the
gateway is gone. When the gateway is SIGKILLed, a group the worker had not committed was never acknowledged to
anyone, and one it had committed is on disk; recovery at the next start handles both.

Not PR_SET_PDEATHSIG: Linux fires it when the *thread* that forked the child exits, not the process, and trio
forks from a worker thread that it retires after 10 idle seconds. The shipped config died 10 s after every
start that way (tests/integration/store/test_writer_process.py keeps it from coming back).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
import traceback

import msgpack

from gateway import gctune
from gateway.errors import StoreError
from gateway.memtrim import Trimmer
from gateway.store import wire
from gateway.store.store import Store

# How often the watcher looks at the parent pid where it cannot wait on a pidfd.
_POLL_SECONDS = 0.5


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> bytes | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    return _recv_exact(sock, wire.LENGTH.unpack(head)[0])


def _die_with_parent(parent: int) -> None:
    """End this process as soon as the gateway `parent` is gone, whatever thread of it started us."""
    if os.getppid() != parent:  # the gateway died before we got here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):  # not Linux >= 5.3: poll the parent pid instead
        pidfd = -1
    if pidfd >= 0 and os.getppid() == parent:  # the pid was still our parent's when the pidfd was taken
        select.select([pidfd], [], [])  # readable once that process has exited
    else:
        while os.getppid() == parent:
            threading.Event().wait(_POLL_SECONDS)
    # Nothing of the group in progress was acknowledged to anyone: leaving mid-transaction is safe (LMDB
    # discards it), and the next gateway must not wait for us.
    os._exit(1)


def serve(sock: socket.socket) -> int:
    first = _recv_frame(sock)
    if first is None:
        return 0
    opening = msgpack.unpackb(first)
    now_ms = opening.pop("now_ms")
    try:
        store = Store.open(wire.config_from_fields(opening), lambda: now_ms)
    except Exception as err:  # reported to the gateway, which refuses to start with the message
        sock.sendall(wire.frame(msgpack.packb([None, f"{type(err).__name__}: {err}"])))
        return 1
    try:
        report = store.last_recovery
        sock.sendall(wire.frame(msgpack.packb([store.last_seq(), report.resent, report.unknown])))
        trimmer = Trimmer()
        while (data := _recv_frame(sock)) is not None:
            sock.sendall(wire.frame(_commit(store, data)))
            trimmer.maybe()  # after the reply: the gateway is not kept waiting
    finally:
        store.close()
    return 0


def _commit(store: Store, data: bytes) -> bytes:
    try:
        now_ms, ops = wire.unpack_request(data)
        results = store.apply(ops, now_ms)
    except Exception as err:  # StoreFull with nothing else to commit, another StoreError, a bug
        if not isinstance(err, StoreError):  # a bug (a bad frame included): its traceback goes to the log
            traceback.print_exc()
        return wire.pack_failure(store.last_seq(), err)
    return wire.pack_reply(store.last_seq(), results)


def main() -> int:
    fd, parent = int(sys.argv[1]), int(sys.argv[2])
    _die_with_parent(parent)
    # Ctrl-C reaches the whole process group and a service manager's SIGTERM often the whole cgroup: the
    # gateway's graceful stop still needs this process for its last commits, and ends it by closing the
    # socket (or, if the gateway dies, by PR_SET_PDEATHSIG).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    gctune.tune()
    with socket.socket(fileno=fd) as sock:
        try:
            return serve(sock)
        except (BrokenPipeError, ConnectionResetError):
            return 1


if __name__ == "__main__":
    sys.exit(main())
