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
