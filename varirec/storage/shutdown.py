"""Process-wide hooks that close the open RunWriters on SIGTERM and at interpreter exit.

Contents:
    register, unregister: track an open writer (the first registers the hooks).
    exit_held: hold back SIGTERM's exit while a writer call is writing.
    signal_of: the signal that is ending a writer's process, if any.
    error_record: the ``{"type", "message"}`` that a run records for an error.

The first writer registered installs (once) an atexit hook and, from the main thread,
a SIGTERM handler. SIGTERM raises ``SystemExit(143)`` in the main thread, so ``with``
blocks and ``finally`` clauses run and every open writer closes its parts; a second
SIGTERM during that shutdown is ignored. A SIGTERM that arrives while the main thread
is inside :func:`exit_held` exits when that block ends, so no batch is half written.
If another SIGTERM handler was installed before, it is called instead (it owns the
shutdown); if SIGTERM was ignored, it stays ignored. The atexit hook closes writers
still open at interpreter exit, as failed if the interpreter is exiting because of
an uncaught exception or SIGTERM.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["error_record", "exit_held", "register", "signal_of", "unregister"]

logger = logging.getLogger(__name__)

_OPEN: set[Any] = set()  # open writers of this process
_SIGNALLED: set[Any] = set()  # the writers that were open when the signal came
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {"atexit": False, "sigterm": False, "previous": None, "signal": None}
_LOCAL = threading.local()  # per thread: depth of exit_held blocks, and the exit held back


def _forget_all() -> None:  # in a forked child: the parent's writers are not ours
    _OPEN.clear()
    _SIGNALLED.clear()
    _STATE["signal"] = None


def register(writer: Any) -> None:
    """Track ``writer`` (it has ``close(error=...)`` and ``run_id``); install the hooks."""
    with _LOCK:
        if not _STATE["atexit"]:
            atexit.register(_close_all_at_exit)
            os.register_at_fork(after_in_child=_forget_all)
            _STATE["atexit"] = True
        if not _STATE["sigterm"] and threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            _STATE["sigterm"] = True
            if previous is not signal.SIG_IGN:
                _STATE["previous"] = previous
                signal.signal(signal.SIGTERM, _on_sigterm)
    _OPEN.add(writer)


def unregister(writer: Any) -> None:
    """Stop tracking a closed ``writer``; once every writer a signal concerned is closed,
    forget the signal (a process that caught the SystemExit may start new runs)."""
    _OPEN.discard(writer)
    _SIGNALLED.discard(writer)
    if not _SIGNALLED:
        _STATE["signal"] = None


def signal_of(writer: Any) -> int | None:
    """The signal that is shutting down ``writer``'s process, or None."""
    return _STATE["signal"] if writer in _SIGNALLED else None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    previous = _STATE["previous"]
    if callable(previous):
        previous(signum, frame)
        return
    if _STATE["signal"] is not None:
        logger.warning("received SIGTERM again while closing RunWriters; still closing")
        return
    if not _OPEN:  # no writer of this process (a forked child starts with none)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _STATE["signal"] = signum
    _SIGNALLED.update(_OPEN)
    if getattr(_LOCAL, "depth", 0):
        _LOCAL.exit_code = 128 + signum
        logger.warning("received SIGTERM: exiting once the current write is done")
        return
    logger.warning("received SIGTERM: closing %d open RunWriter(s), then exiting", len(_OPEN))
    raise SystemExit(128 + signum)


@contextmanager
def exit_held() -> Iterator[None]:
    """Hold back SIGTERM's exit while this thread writes; raise it when the block ends.

    Raised between a row group's write and its bookkeeping, the exit would abort the
    open part and lose its rows; raised after the block, every accepted row is kept.
    """
    depth = getattr(_LOCAL, "depth", 0)
    _LOCAL.depth = depth + 1
    try:
        yield
    finally:
        _LOCAL.depth = depth
        code = getattr(_LOCAL, "exit_code", None)
        if depth == 0 and code is not None:
            _LOCAL.exit_code = None
            logger.warning("closing %d open RunWriter(s), then exiting", len(_OPEN))
            raise SystemExit(code)


def _close_all_at_exit() -> None:
    error = None if hasattr(sys, "ps1") else getattr(sys, "last_value", None)
    for writer in sorted(_OPEN, key=id):
        try:
            writer.close(error=error)
        except BaseException:
            logger.exception("closing RunWriter of run %r at exit failed", writer.run_id)


def error_record(error: BaseException | None, signum: int | None) -> dict[str, str] | None:
    """What a run records about how it ended: None for success, else type and message.

    ``signum`` (the signal shutting the process down) wins over a SystemExit.
    """
    if signum is not None and (error is None or isinstance(error, SystemExit)):
        name = signal.Signals(signum).name
        return {"type": name, "message": f"process received {name} and shut down cleanly"}
    if error is None or (isinstance(error, SystemExit) and error.code in (0, None)):
        return None
    return {"type": type(error).__qualname__, "message": str(error) or repr(error)}
