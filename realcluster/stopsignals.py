"""SIGTERM and SIGINT end a process that holds a real cluster only after its children are stopped.

The control plane's programs run in sessions of their own (``start_new_session``), so a signal to the
test or benchmark holding them does not reach them, and a process that dies of SIGTERM runs no
``finally``: a benchmark killed with SIGTERM left etcd and kube-apiserver running. While a cluster is
open (:func:`stopped_by_signals`, in the main thread only, where Python runs signal handlers):

- SIGTERM, where the process would die of it (its disposition is the default), raises
  :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread instead, so the ``finally`` that
  stops the children runs; when the last cluster is closed, the previous handlers are back and SIGTERM
  is raised again: the process ends with the status SIGTERM gives it.
- SIGINT, where Python's own handler has it, raises ``KeyboardInterrupt`` as before.
- Inside :func:`signals_held` (while the children are stopped, or one is being started and is not
  recorded yet) either signal waits for the block's end, then acts as above.
- A signal someone else handles (``tessera demo`` sets its stop event) or ignores is left to them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_previous: dict[int, object] = {}   # signal -> the handler replaced, while a cluster is open
_open = 0                           # clusters open
_holding = 0                        # signals_held blocks open
_pending: list[int] = []            # signals received and not acted on to the end


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a real cluster was open: unwinding, so its children are stopped first. A
    KeyboardInterrupt, so that what stops on Ctrl-C stops on it too (pytest ends the session, tearing
    its fixtures down, rather than fail one test and go on)."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum: int) -> None:
    """Act on a signal in the main thread now: SIGINT as Python's handler does, SIGTERM by unwinding."""
    if signum == signal.SIGINT:
        _pending.remove(signum)
        raise KeyboardInterrupt
    raise Terminated(f"signal {signal.Signals(signum).name} while a real cluster was running")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if signum not in _pending:
        _pending.append(signum)
    if not _holding:
        _interrupt(signum)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block ends (then act on them, unless the block is already
    raising); nothing off the main thread or while no cluster is open."""
    global _holding
    if not (_open and _in_main_thread()):
        yield
        return
    _holding += 1
    try:
        yield
    except BaseException:
        _holding -= 1
        raise
    _holding -= 1
    if not _holding and _pending:
        _interrupt(_pending[0])


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """While open, SIGTERM and SIGINT unwind the main thread rather than end the process at once (see
    the module's docstring); on the last close the previous handlers are back, and a SIGTERM received
    is raised again. Nested clusters share the handlers."""
    global _open
    if not _in_main_thread():
        yield
        return
    if not _open:
        for signum, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
            if signal.getsignal(signum) is default:
                _previous[signum] = signal.signal(signum, _on_signal)
    _open += 1
    try:
        yield
    except BaseException:
        _close()
        raise
    _close()
    if _open and _pending:   # held while an inner cluster stopped: the outer one unwinds now
        _interrupt(_pending[0])


def _close() -> None:
    global _open
    _open -= 1
    if _open:
        return
    for signum, handler in _previous.items():
        signal.signal(signum, handler)
    _previous.clear()
    received = sorted(_pending, key=lambda signum: signum != signal.SIGTERM)   # SIGTERM wins
    _pending.clear()
    for signum in received:   # the process ends as the signal ends it (SIGINT: KeyboardInterrupt)
        signal.raise_signal(signum)
