"""Sensitivity estimators (Sobol, Morris, given data) and their typed results."""
