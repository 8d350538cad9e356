"""Starting server processes that do not outlive the Python process that started them.

``atexit`` covers a normal exit only: a Python process ended by SIGTERM (its default action:
CI cancelling a job, ``timeout``, an IDE's stop button, ``docker stop``) or SIGKILL (the OOM
killer) runs no handler, and a server it started would be re-parented to init and keep its
port and memory. On Linux every server is therefore started with ``PR_SET_PDEATHSIG``: the
kernel sends it SIGKILL when its parent goes away, however that happens.

``PR_SET_PDEATHSIG`` can only be set by the child itself, between fork and exec. Rather than
run Python code in the forked child (``preexec_fn``: unsafe in a process with threads, and
it rules out ``vfork``), the server is started through a tiny ``python -I -S -c`` trampoline
that sets the flag, checks that its parent is still the process that started it (else that
parent died before the flag was set, and it exits), and ``exec``s the server: same PID, same
arguments, nothing left in between.

The signal fires when the *thread* that forked the child ends, not the process. So a server
is forked from the main thread when it is started there, and otherwise from one daemon
thread that lives as long as the process: a server started from a short-lived worker thread
(a ``ThreadPoolExecutor`` task) outlives that thread. Elsewhere than on Linux, servers are
started plainly and are stopped by ``atexit`` (and :meth:`RedisServer.stop`) only.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["spawn"]

# argv: ppid, then the server's argv. 1 is PR_SET_PDEATHSIG, 9 is SIGKILL: a throwaway
# server holds nothing worth a graceful shutdown, and a SIGSTOPped one must die too. Best
# effort: where ctypes or prctl is missing the server still starts (atexit stops it).
_TRAMPOLINE = (
    "import os, sys\n"
    "try:\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(0)  # the parent died before the flag was set: nobody wants the server\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

_LINUX = sys.platform.startswith("linux")


def _command(args: Sequence[str]) -> list[str]:
    if not (_LINUX and sys.executable):
        return list(args)
    return [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(os.getpid()), *args]


def spawn(args: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **popen_kwargs)`` for a server that dies with this process
    (on Linux); the PID is the server's own."""
    command = _command(args)
    if not _LINUX or threading.current_thread() is threading.main_thread():
        return subprocess.Popen(command, **popen_kwargs)
    return _Forker.get().run(lambda: subprocess.Popen(command, **popen_kwargs))


class _Forker:
    """One daemon thread per process that forks servers for other threads."""

    _lock = threading.Lock()
    _instance: _Forker | None = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(
            target=self._serve, name="redmodel-server-forker", daemon=True
        )
        self._thread.start()

    @classmethod
    def get(cls) -> _Forker:
        with cls._lock:
            # a forked child (multiprocessing) inherits the object but not the thread
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def _serve(self) -> None:
        while True:
            job, answer = self._jobs.get()
            try:
                answer.put((True, job()))
            except BaseException as exc:  # handed to the caller, raised there
                answer.put((False, exc))

    def run(self, job: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        answer: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._jobs.put((job, answer))
        ok, value = answer.get()
        if not ok:
            raise value
        result: subprocess.Popen[bytes] = value
        return result
