"""Collection rules for the repository root (doctests of the package folders), and
where their temporary folders go."""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator

import pytest

# The mjlab integration imports mjlab and torch (the `mjlab` extra): its doctests run
# only where they are installed (CI's mjlab step); tests/test_mjlab.py skips itself.
collect_ignore_glob = (
    []
    if importlib.util.find_spec("mjlab") and importlib.util.find_spec("torch")
    else ["varirec/integrations/mjlab/*"]
)
# The compiled kernels import numba (the `fast` extra); tests/test_compiled_draws.py skips.
if not importlib.util.find_spec("numba"):
    collect_ignore_glob.append("varirec/sampling/compiled.py")


@pytest.fixture(autouse=True, scope="session")
def _tempfiles_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``tempfile``'s folders (the doctests' examples make their datasets so) go under
    pytest's own base, which keeps the last three sessions: left in the system's
    temporary folder, every run added ~100 of them, some of 200 MB."""
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = before
