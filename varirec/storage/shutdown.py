"""Process-wide hooks that close the open RunWriters on SIGTERM and at interpreter exit.

Contents:
    register, unregister: track an open writer or manager (the first registers the hooks).
    install_hooks: install them before a writer touches the disk.
    exit_held: hold back SIGTERM's exit and Ctrl-C while a batch is handed over or written.
    hand_over: give a buffered batch to a writer and clear the buffer, exactly once.
    raise_if_pending: inside :func:`exit_held`, raise a held-back exit before anything
        was handed over (a wait for queue space stays interruptible).
    signal_of: the signal that is ending a writer's process, if any.
    error_record: the ``{"type", "message"}`` that a run records for an error.

The first writer registered installs (once) an atexit hook and, from the main thread,
a SIGTERM handler. SIGTERM raises ``SystemExit(143)`` in the main thread, so ``with``
blocks and ``finally`` clauses run and every open writer closes its parts; a second
SIGTERM during that shutdown is ignored. A SIGTERM that arrives while the main thread
is inside :func:`exit_held` exits when that block ends, so no batch is half written.
If another SIGTERM handler was installed before, it is called instead (it owns the
shutdown), at once or, inside :func:`exit_held`, when the block ends; if SIGTERM was
ignored, it stays ignored. A handler installed after the first writer replaces
varirec's: what it does happens where the signal lands. The atexit hook closes writers
still open at interpreter exit, as failed if the interpreter is exiting because of
an uncaught exception or SIGTERM. Objects are closed in the reverse order of their
registration: a RecorderManager (registered after the RunWriter it opened) hands its
buffered rows to its writer before the writer closes.

Python installs signal handlers from the main thread only. A writer made on another
thread logs that, unless :func:`install_hooks` ran on the main thread first; with it, a
SIGTERM raises the exit in the main thread, the recording thread raises it at its next
``record_step`` (:func:`exit_if_signalled`) and closes its runs, and the exit hook waits
for that thread (up to :data:`OWNER_WAIT_SECONDS`) before it closes what is left.

Ctrl-C is held back like SIGTERM inside :func:`exit_held` on the main thread: a batch
is then either accepted by the writer and cleared from its buffer, or still in the
buffer, never both or neither. With Python's default handler the KeyboardInterrupt is
raised when the block ends; an application's own SIGINT handler is called then. A
second Ctrl-C while closing (``exit_held(closing=True)``) interrupts at once.
"""

from __future__ import annotations

import _signal  # signal's own functions: signal.signal wraps each in enum conversions
import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = [
    "error_record",
    "exit_held",
    "exit_if_signalled",
    "hand_over",
    "install_hooks",
    "propagating",
    "raise_if_pending",
    "register",
    "registered",
    "signal_of",
    "unregister",
]

logger = logging.getLogger(__name__)

_OPEN: dict[Any, threading.Thread | None] = {}  # open writers and managers, in order: their thread
_SIGNALLED: set[Any] = set()  # the writers that were open when the signal came
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {"atexit": False, "sigterm": False, "previous": None, "signal": None}
_LOCAL = threading.local()  # per thread: depth of exit_held blocks, and the exit held back
_SIGINT = int(signal.SIGINT)


def _forget_all() -> None:  # in a forked child: the parent's writers are not ours
    _OPEN.clear()
    _SIGNALLED.clear()
    _STATE["signal"] = None


def register(writer: Any) -> None:
    """Track ``writer`` (it has ``close(error=...)`` and ``run_id``); install the hooks.

    Objects registered later are closed first (a manager before its writer)."""
    install_hooks()
    if _STATE["signal"] is not None:  # made while a held-back SIGTERM waits: it ends it too
        _SIGNALLED.add(writer)
    _OPEN[writer] = threading.current_thread()


def install_hooks() -> None:
    """Install the atexit hook and (from the main thread) the SIGTERM handler, once: a
    writer calls it before it touches the disk, so that a SIGTERM while it creates its
    run is held back (:func:`exit_held`) instead of killing the process midway."""
    with _LOCK:
        if not _STATE["atexit"]:
            atexit.register(_close_all_at_exit)
            os.register_at_fork(after_in_child=_forget_all)
            _STATE["atexit"] = True
        if _STATE["sigterm"]:
            return
        if threading.current_thread() is not threading.main_thread():
            if not _STATE.get("told"):  # Python takes signal handlers from the main thread only
                _STATE["told"] = True
                logger.warning(
                    "a varirec writer was made off the main thread, which cannot install "
                    "varirec's SIGTERM handler: a SIGTERM kills the process with up to a "
                    "flush window of rows unwritten; call varirec.storage.install_hooks() "
                    "on the main thread before starting the thread that records"
                )
            return
        previous = signal.getsignal(signal.SIGTERM)
        _STATE["sigterm"] = True
        if previous is not signal.SIG_IGN:
            _STATE["previous"] = previous
            signal.signal(signal.SIGTERM, _on_sigterm)


def exit_if_signalled(owner: Any) -> None:
    """On a thread other than the main one, raise the SIGTERM exit that is ending
    ``owner``'s process (the main thread raised it already; a thread that records would
    otherwise go on, and the interpreter waits for it before it closes the runs).
    Called where a hook begins, before it changes anything."""
    if _STATE["signal"] is None or owner not in _SIGNALLED:
        return
    if threading.current_thread() is not threading.main_thread():
        raise SystemExit(128 + _STATE["signal"])


def registered(writer: Any) -> bool:
    """Whether ``writer`` is tracked (registered, not yet unregistered)."""
    return writer in _OPEN


def unregister(writer: Any) -> None:
    """Stop tracking a closed ``writer``; once every writer a signal concerned is closed,
    forget the signal (a process that caught the SystemExit may start new runs)."""
    _OPEN.pop(writer, None)
    _SIGNALLED.discard(writer)
    if not _SIGNALLED:
        _STATE["signal"] = None


def signal_of(writer: Any) -> int | None:
    """The signal that is shutting down ``writer``'s process, or None."""
    return _STATE["signal"] if writer in _SIGNALLED else None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    previous = _STATE["previous"]
    if callable(previous):
        if getattr(_LOCAL, "depth", 0):  # mid-write: the application's handler runs after
            _defer(previous, signum, frame)
            return
        _app_handler(previous, signum, frame)
        return
    if _STATE["signal"] is not None:
        logger.warning("received SIGTERM again while closing RunWriters; still closing")
        return
    if not _OPEN and not getattr(_LOCAL, "depth", 0):
        # no writer of this process (a forked child starts with none), none being made
        # or closed (inside exit_held: a run being created, or a close past unregister)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _STATE["signal"] = signum
    _SIGNALLED.update(_OPEN)
    if getattr(_LOCAL, "depth", 0):
        _LOCAL.pending = SystemExit(128 + signum)
        logger.warning("received SIGTERM: exiting once the current write is done")
        return
    logger.warning(
        "received SIGTERM: closing %d open recorder(s) and writer(s), then exiting", len(_OPEN)
    )
    raise SystemExit(128 + signum)


def _app_handler(handler: Callable[..., Any], signum: int, frame: FrameType | None) -> None:
    """The application's own handler of ``signum``; where it raises on SIGTERM (its
    ``sys.exit(143)``), the open runs note the signal as why they ended (a run closed
    at exit learns nothing of a SystemExit that ended the script)."""
    try:
        handler(signum, frame)
    except BaseException:
        if signum == signal.SIGTERM and _OPEN:
            _STATE["signal"] = signum
            _SIGNALLED.update(_OPEN)
        raise


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """Installed only inside :func:`exit_held`: holds Ctrl-C back until the block ends
    (the SIGINT handler it replaced is ``_LOCAL.sigint``)."""
    own = getattr(_LOCAL, "sigint", signal.default_int_handler)
    if own is not signal.default_int_handler:  # the application's handler, called later
        if not getattr(_LOCAL, "depth", 0) or (getattr(_LOCAL, "closing", 0) and _deferred(own)):
            own(signum, frame)  # outside a block, or a second Ctrl-C while closing
        else:
            _defer(own, signum, frame)
        return
    if not getattr(_LOCAL, "depth", 0):  # outside a block: what Python does by default
        raise KeyboardInterrupt
    if getattr(_LOCAL, "closing", 0) and getattr(_LOCAL, "ctrl_c", False):
        raise KeyboardInterrupt  # a second Ctrl-C while closing: the user insists
    _LOCAL.ctrl_c = True
    if getattr(_LOCAL, "pending", None) is None:  # a SIGTERM's exit held already stays
        _LOCAL.pending = KeyboardInterrupt()


@contextmanager
def exit_held(*, closing: bool = False) -> Iterator[None]:
    """Hold back SIGTERM's exit and Ctrl-C while this thread writes; raise when the block ends.

    Raised between a batch's hand-over and the clearing of its buffer, the exception
    would lose the batch or send it twice; raised after the block, every batch is in
    exactly one place. Inside the block, :func:`raise_if_pending` raises it early where
    nothing was handed over yet. ``closing=True`` (a close in progress) makes
    :func:`raise_if_pending` wait for the block's end too.

    Ctrl-C is held back on the main thread, where a Python function handles SIGINT
    (Python's default handler, or the application's own: called when the block ends).
    """
    depth = getattr(_LOCAL, "depth", 0)
    if depth == 0 and (getattr(_LOCAL, "pending", None) is not None or _deferred_any()):
        _left_behind()
    closing_before = getattr(_LOCAL, "closing", 0)
    own = None
    if depth == 0 and threading.current_thread() is threading.main_thread():
        own = _signal.getsignal(_SIGINT)
        if own is _on_sigint:  # left installed by an interrupted block
            own = getattr(_LOCAL, "sigint", signal.default_int_handler)
        elif not callable(own):  # ignored, or the C default: nothing to hold back
            own = None
    swap = own is not None
    try:
        # _on_sigint acts as the replaced handler outside a block, so if an interrupt
        # lands between these lines, or after the restore below, nothing is held back
        if swap:
            _LOCAL.sigint = own
            _signal.signal(_SIGINT, _on_sigint)
        _LOCAL.closing = closing_before + closing
        _LOCAL.depth = depth + 1
        yield
    finally:
        _LOCAL.closing = closing_before
        _LOCAL.depth = depth
        if swap and _signal.getsignal(_SIGINT) is _on_sigint:  # not replaced meanwhile
            _signal.signal(_SIGINT, own)
        if depth == 0:
            _raise_pending()


def hand_over(send: Callable[[Any], object], item: Any, clear: Callable[[], object]) -> None:
    """``send(item)``, then ``clear()`` the buffer ``item`` came from: exactly once.

    A Ctrl-C or SIGTERM that arrives meanwhile is raised either before ``send``
    accepted ``item`` (the buffer keeps it, to be sent again by the next hand-over or
    the close) or after ``clear`` (:func:`exit_held`). An ordinary exception from
    ``send`` (a failed or refused write, reported with its rows) clears the buffer
    too, so nothing is written twice.
    """
    with exit_held():
        try:
            send(item)
        except Exception:
            clear()
            raise
        clear()


def raise_if_pending() -> None:
    """Raise a held-back SIGTERM exit or Ctrl-C now, unless a close is in progress.

    Call it inside :func:`exit_held` only where nothing has been handed over yet.
    """
    if not getattr(_LOCAL, "closing", 0):
        _raise_pending(deferred=False)  # the application's handlers wait for the block's end


def _defer(handler: Callable[..., Any], signum: int, frame: FrameType | None) -> None:
    """Call the application's signal ``handler`` when this thread's block ends (once per
    handler and signal)."""
    if not _deferred(handler, signum):
        _LOCAL.deferred = [*getattr(_LOCAL, "deferred", ()), (handler, signum, frame)]


def _deferred_any() -> bool:
    return bool(getattr(_LOCAL, "deferred", ()))


def _left_behind() -> None:
    """What a block held and did not raise: a second Ctrl-C landed in its last lines
    (after the handler was put back), and the KeyboardInterrupt it raised left before
    the block's end raised what it held. Nothing is handed over yet here: a held exit
    is raised now, the application's held-back handlers are called now; a held Ctrl-C
    is dropped (the one that escaped was the user's)."""
    if isinstance(getattr(_LOCAL, "pending", None), KeyboardInterrupt):
        _LOCAL.pending, _LOCAL.ctrl_c = None, False
    _raise_pending()


def _deferred(handler: Callable[..., Any], signum: int = _SIGINT) -> bool:
    """Whether ``handler`` waits for this thread's block to end, for ``signum``."""
    return any(h is handler and n == signum for h, n, _ in getattr(_LOCAL, "deferred", ()))


def _raise_pending(*, deferred: bool = True) -> None:
    """Raise what a signal held back; ``deferred``: call the application's handlers held
    back first (each one, whatever another raises). varirec's own exit goes first, then
    the first error of a handler, then a held Ctrl-C; where an exit is on its way already
    (raise_if_pending raised it inside the block), the handlers run and it goes on."""
    handlers = getattr(_LOCAL, "deferred", ()) if deferred else ()
    pending = getattr(_LOCAL, "pending", None)
    if pending is None and not handlers:  # the usual end of a block: nothing held
        return
    _LOCAL.pending, _LOCAL.ctrl_c = None, False
    if deferred:
        _LOCAL.deferred = ()
    raised: BaseException | None = None
    for handler, signum, frame in handlers:
        try:
            _app_handler(handler, signum, frame)
        except BaseException as exc:
            if raised is None:
                raised = exc
    if isinstance(pending, SystemExit):
        logger.warning("closing %d open recorder(s) and writer(s), then exiting", len(_OPEN))
        if not _SIGNALLED:  # no open writer to close for it (held while one was made
            _STATE["signal"] = None  # or closed): a caught exit leaves no signal behind
        raise pending
    if isinstance(sys.exc_info()[1], SystemExit):  # called from exit_held's finally
        return
    if raised is not None:
        raise raised
    if pending is not None:
        raise pending


OWNER_WAIT_SECONDS = 10.0
"""How long the exit waits, on SIGTERM, for a thread that records to close its own run
(it raises the exit at its next ``record_step``)."""


def _recording_threads() -> list[threading.Thread]:
    """The other threads that made the open writers and still run, where a SIGTERM is
    ending the process: each closes its runs at its next hook. (On Python 3.11 a join
    that the signal interrupted marks its thread stopped, and the interpreter does not
    wait for it: its frames are what tell that it runs.)"""
    if _STATE["signal"] is None:
        return []
    me, running = threading.current_thread(), sys._current_frames()
    owners = {id(t): t for t in _OPEN.values() if t is not None and t is not me}
    return [t for t in owners.values() if t.ident in running]


def _close_all_at_exit() -> None:
    error = None if hasattr(sys, "ps1") else getattr(sys, "last_value", None)
    deadline = time.monotonic() + OWNER_WAIT_SECONDS
    threads = _recording_threads()
    while threads and time.monotonic() < deadline:  # until they closed their runs, whole
        time.sleep(0.01)
        running = sys._current_frames()
        threads = [t for t in threads if t.ident in running]
    for writer in reversed(list(_OPEN)):  # managers hand their rows to writers first
        try:
            writer.close(error=error, closed_by="exit")
        except BaseException:
            logger.exception("closing %r at exit failed", writer)


def propagating() -> BaseException | None:
    """The exception on its way through the caller's caller (a ``close()`` in a
    ``finally`` block or an ``except`` clause, or a context manager's exit that calls
    it), else None: why a run closed without an ``error`` ended. GeneratorExit and
    StopIteration end a generator or a loop, not a run.

    Example:
        >>> try:
        ...     raise KeyboardInterrupt
        ... except KeyboardInterrupt:
        ...     type(propagating()).__name__
        'KeyboardInterrupt'
        >>> propagating() is None
        True
    """
    exc = sys.exc_info()[1]
    return None if isinstance(exc, (GeneratorExit, StopIteration, StopAsyncIteration)) else exc


def error_record(error: BaseException | None, signum: int | None) -> dict[str, str] | None:
    """What a run records about how it ended: None for success, else type and message.

    ``signum`` (the signal shutting the process down) wins over a SystemExit.
    """
    if signum is not None and (error is None or isinstance(error, SystemExit)):
        name = signal.Signals(signum).name
        return {"type": name, "message": f"process received {name} and shut down cleanly"}
    if error is None or (isinstance(error, SystemExit) and error.code in (0, None)):
        return None
    if isinstance(error, KeyboardInterrupt) and not str(error):
        return {"type": "KeyboardInterrupt", "message": "interrupted by Ctrl-C (SIGINT)"}
    return {"type": type(error).__qualname__, "message": str(error) or repr(error)}
