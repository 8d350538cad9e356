"""FaultProxy.stop() while its loop's thread ends: the wake socket is read once.

CI (stop 33) once failed a fixture's teardown with AttributeError: ``stop()`` checked the
wake socket, the loop's thread (ending) closed it and set it to None, and ``stop()`` then
read it again to send. The race is made certain here: the attribute answers a closed
socket to the first read and None to every later one, as the ending thread would."""

from __future__ import annotations

import socket
from typing import Any

from redmodel.testing import FaultProxy


class _Ending(FaultProxy):
    """A proxy whose wake socket is taken away right after the first read of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        a, b = socket.socketpair()
        a.close()
        b.close()
        self.__dict__["_closed"] = b
        self.__dict__["_reads"] = 0

    def __getattribute__(self, name: str) -> Any:
        if name == "_wake_w":
            reads = object.__getattribute__(self, "_reads")
            object.__setattr__(self, "_reads", reads + 1)
            return object.__getattribute__(self, "_closed") if reads == 0 else None
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "_wake_w":  # (set by __init__ and start: this test never starts it)
            object.__setattr__(self, name, value)


def test_a_wake_whose_socket_is_closed_meanwhile_is_no_error() -> None:
    proxy = _Ending("127.0.0.1", 1)
    proxy._wake()  # sends to the closed socket it read once: an OSError, suppressed
    assert object.__getattribute__(proxy, "_reads") == 1
