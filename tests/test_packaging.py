"""The package's shape: what `import varirec` loads, and what the distribution installs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import varirec
import varirec.analysis

ROOT = Path(__file__).resolve().parents[1]
ANALYSIS_STACK = ("pandas", "SALib", "matplotlib", "varirec.analysis")


def _imported_by(statement: str) -> set[str]:
    """Top-level and dotted module names that ``python -X importtime -c statement``
    imports in a fresh interpreter (importtime lists every module it loads)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return {line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if "|" in line}


def test_import_varirec_loads_no_analysis_stack() -> None:
    loaded = _imported_by("import varirec")
    assert "varirec" in loaded and "pyarrow" in loaded  # the probe reads importtime right
    heavy = sorted(
        m for m in loaded if m.split(".")[0] in ANALYSIS_STACK or m.startswith("varirec.analysis")
    )
    assert heavy == [], f"import varirec loaded {heavy[:5]}"


def test_import_varirec_loads_no_torch_until_handed_a_tensor() -> None:
    """torch is optional and heavy (seconds to import): only a tensor brings it in."""
    loaded = _imported_by("import varirec, numpy; varirec.NullRecorderManager(2).reset(None, [0])")
    assert "varirec" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "jax", "cupy")], sorted(
        m for m in loaded if m.startswith("torch")
    )[:5]


def test_recording_path_loads_no_analysis_stack() -> None:
    """What a simulator process imports to record (manager, storage, integrations)."""
    loaded = _imported_by(
        "import varirec.recording.manager, varirec.storage, varirec.integrations.builder"
    )
    assert not [m for m in loaded if m.split(".")[0] in ("pandas", "SALib", "matplotlib")]


def test_analysis_is_a_subpackage_not_a_top_level_package() -> None:
    assert varirec.analysis.__name__ == "varirec.analysis"
    installed = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('analysis'))"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",  # not the repository, whose analysis/ folder would be found from here
    ).stdout.strip()
    assert installed == "None"


def test_the_package_list_names_every_package_folder() -> None:
    """pyproject lists packages explicitly (analysis/ maps to varirec.analysis): a new
    sub-package folder that is not listed would be missing from the wheel."""
    if not (ROOT / "varirec").is_dir():
        pytest.skip("runs in a source checkout (the wheel's own test has no package folders)")
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "varirec").rglob("__init__.py")
    } | {
        ".".join(("varirec", *p.parent.relative_to(ROOT).parts))
        for p in (ROOT / "analysis").rglob("__init__.py")
    }
    assert listed == folders
