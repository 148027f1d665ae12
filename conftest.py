"""Collection rules for the repository root (doctests of the package folders)."""

from __future__ import annotations

import importlib.util

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
