"""Analytic test functions: values, exact indices, and the numpy-only import rule."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import varirec.envs.analytic as analytic
from varirec.envs.analytic import ishigami, ishigami_indices, sobol_g, sobol_g_indices


def test_ishigami_known_point() -> None:
    x = np.array([[np.pi / 2, np.pi / 2, 1.0], [0.0, 0.0, 2.0]])
    np.testing.assert_allclose(ishigami(x), [1.0 + 7.0 + 0.1, 0.0])
    np.testing.assert_allclose(ishigami(x[0]), [8.1])  # one point as a 1-D array


def test_ishigami_indices_published_values() -> None:
    ind = ishigami_indices(7.0, 0.1)
    np.testing.assert_allclose(ind["S1"], [0.3139, 0.4424, 0.0], atol=5e-5)
    np.testing.assert_allclose(ind["ST"], [0.5576, 0.4424, 0.2437], atol=5e-5)
    # The decomposition is complete: S1 + S2 + S3 + S13 = 1.
    assert ind["S1"].sum() + ind["S2"][0, 2] == pytest.approx(1.0)
    assert np.isnan(ind["S2"][1, 0])


def test_ishigami_variance_by_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-np.pi, np.pi, size=(400_000, 3))
    assert ishigami(x).var() == pytest.approx(ishigami_indices()["variance"], rel=0.01)


def test_sobol_g_indices_closed_form_by_quadrature() -> None:
    a = np.array([0.0, 1.0, 4.5])
    ind = sobol_g_indices(a)
    grid = (np.arange(20_000) + 0.5) / 20_000
    g = (np.abs(4.0 * grid - 2.0)[:, np.newaxis] + a) / (1.0 + a)  # E[Y | x_i], others mean 1
    partial = g.var(axis=0)
    full = np.prod(1.0 + partial) - 1.0
    np.testing.assert_allclose(ind["S1"], partial / full, rtol=1e-6)
    # With D = 3, ST_1 = S1 + S12 + S13 + S123.
    s123 = np.prod(partial) / full
    assert ind["ST"][0] == pytest.approx(ind["S1"][0] + ind["S2"][0, 1] + ind["S2"][0, 2] + s123)


def test_sobol_g_values() -> None:
    np.testing.assert_allclose(sobol_g([[0.5, 0.5], [0.0, 1.0]], [0.0, 1.0]), [0.0, 3.0])


def test_sobol_g_rejects_bad_coefficients_and_shapes() -> None:
    with pytest.raises(ValueError, match="`a` must hold finite coefficients >= 0"):
        sobol_g_indices([1.0, -1.0])
    with pytest.raises(ValueError, match="`X` must have 2 columns, got 3"):
        sobol_g(np.zeros((4, 3)), [0.0, 1.0])
    with pytest.raises(ValueError, match="`X` must have 3 columns"):
        ishigami(np.zeros((4, 2)))


def test_module_imports_numpy_only() -> None:
    """The core package runs in the simulator: no pandas, SALib or matplotlib here."""
    tree = ast.parse(Path(analytic.__file__).read_text(encoding="utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules <= {"__future__", "numpy"}
