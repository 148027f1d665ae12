"""Check that a design run's recorded draws are the rows of its stored design.

A run recorded with a design stores the design matrix (the ``design`` table, unit
values per ``sample_id``) and each variation's base sampler (``run.json``). The value
drawn for design row ``i`` must be that sampler's quantile of the row's unit value.
If it is not (``Design.bind`` forgotten, the design bound to other variations, a
design table that does not belong to the run), the episodes ran other values than
their ``sample_id`` says, and Sobol or Morris indices computed from them are
meaningless: :func:`check_design_values` refuses them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc

from varirec.analysis.tables.as_of import dictionary_codes
from varirec.errors import DesignError
from varirec.sampling.cfg_base import cfg_from_dict
from varirec.storage import Dataset

__all__ = ["check_design_values"]

_RTOL = 1e-9


def check_design_values(ds: Dataset, run_id: str, design: dict[str, Any], rows: Any = None) -> None:
    """Raise :class:`DesignError` if the run's design-row draws differ from its design.

    Every reset draw tagged with a ``sample_id`` is compared with the stored design's
    value for that row and variation component (labels for text categories);
    ``rows``: the design table to compare with instead (a resume's rebuilt design,
    where the run lost its own).
    """
    stored = (ds.read("design", run_id) if rows is None else rows).to_pandas()
    if stored.empty:
        raise DesignError(
            f"run {run_id!r} has a design in run.json but no design table "
            f"(design/ under {ds.path}/run_id={run_id}); re-record the study, or analyse "
            "it as given data (--method binning)"
        )
    stored = stored.drop_duplicates("sample_id").set_index("sample_id").sort_index()
    draws = ds.draws(
        run_id,
        columns=["variation", "component", "sample_id", "value", "label"],
        filter=pc.field("sample_id") >= 0,
    )
    if draws.num_rows == 0:
        return
    var_codes, var_names = dictionary_codes(draws.column("variation"))
    label_codes, label_names = dictionary_codes(draws.column("label"))
    labels = np.asarray([*label_names, ""], dtype=object)
    component = draws.column("component").to_numpy()
    sample_id = draws.column("sample_id").to_numpy()
    value = draws.column("value").to_numpy()
    factor_names = [f["name"] for f in design["factors"]]
    wrong: dict[str, int] = {}
    checked = 0
    for key, entry in design.get("variations", {}).items():
        if key not in var_names:
            continue
        cfg = cfg_from_dict(entry["sampler"])
        columns = [factor_names[j] for j in entry["columns"]]
        rows = var_codes == var_names.index(key)
        ids = sample_id[rows]
        known = np.isin(ids, stored.index.to_numpy())
        unit = stored.loc[ids[known], columns].to_numpy(float)
        expected = np.asarray(cfg.ppf(unit)).reshape(len(unit), -1)
        comp = component[rows][known].astype(np.int64)
        want = expected[np.arange(len(unit)), np.minimum(comp, expected.shape[1] - 1)]
        codes = label_codes[rows][known]
        if want.dtype.kind in "USO":  # text categories: compare labels
            got = labels[np.where(codes >= 0, codes, len(label_names))]
            bad = got != want.astype(str)
        else:
            got = value[rows][known]
            bad = ~np.isclose(got, want.astype(float), rtol=_RTOL, atol=0.0)
        bad_count = int(bad.sum()) + int((~known).sum())
        checked += int(rows.sum())
        if bad_count:
            wrong[key] = bad_count
    if wrong:
        total = sum(wrong.values())
        raise DesignError(
            f"run {run_id!r}: {total} of {checked} design-row draws differ from the stored "
            f"design ({', '.join(f'{k}: {n}' for k, n in wrong.items())}): the episodes did "
            "not run the design's rows (was Design.bind(variations) called before the first "
            "reset?). Re-record the study with the design bound, or analyse the run as "
            "given data (--method binning)"
        )
