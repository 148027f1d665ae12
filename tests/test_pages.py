"""The episode table's arrays are allocated without numpy's huge-page advice, and the
advice is restored after, also when the block raises."""

from __future__ import annotations

import pytest

from varirec.analysis.tables.pages import no_hugepage_advice

set_advice = pytest.importorskip("numpy._core.multiarray")._set_madvise_hugepage


def test_the_advice_is_off_inside_and_restored_after() -> None:
    before = set_advice(True)
    try:
        with no_hugepage_advice():
            assert set_advice(False) is False  # off inside
        assert set_advice(True) is True  # restored
        with pytest.raises(RuntimeError), no_hugepage_advice():
            raise RuntimeError("a failed build")
        assert set_advice(True) is True  # restored after the error too
    finally:
        set_advice(before)


def test_blocks_in_two_threads_restore_the_advice_only_after_the_last() -> None:
    import threading

    before = set_advice(True)
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with no_hugepage_advice():
            inside.set()
            release.wait(5)

    try:
        thread = threading.Thread(target=other)
        thread.start()
        inside.wait(5)
        with no_hugepage_advice():  # opened after the other thread's block ...
            release.set()
            thread.join(5)  # ... which ends first
            assert set_advice(False) is False  # still off: this block is open
        assert set_advice(True) is True  # on again after the last block, as before both
    finally:
        release.set()
        set_advice(before)
