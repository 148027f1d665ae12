"""What a dataset holds, for ``varirec inspect``: runs, variations, episodes, outcomes.

Reads only; never writes. Row counts come from the Parquet footers of the readable
parts (cheap, and right for a run whose writer was killed before it counted anything),
beside what the writers recorded; parts that the reader skipped (unfinished, damaged,
foreign) are listed with the reason and the rows they held, never a negative count.

>>> import tempfile, numpy as np, varirec as vr
>>> root = tempfile.mkdtemp()
>>> with vr.RecorderManager(2, output=root, run_id="r") as m:
...     m.reset(None, None); m.record_step(reward=np.ones(2)); m.record_pre_reset(None)
>>> inspect_dataset(root)["runs"][0]["episodes"]
2
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pyarrow.compute as pc

from varirec.storage import Dataset, DatasetWarning, open_dataset

__all__ = ["format_inspection", "inspect_dataset"]

_OUTCOMES = ("success", "return", "length", "terminated", "truncated")


def _sampler_text(spec: dict[str, Any]) -> str:
    s = dict(spec.get("sampler", {}))
    kind = s.pop("kind", "?")
    s.pop("names", None)
    if kind == "design":
        base = s.get("base") or {}
        return f"design ({s.get('rows')} rows) over {base.get('kind', '?')}"
    params = ", ".join(f"{k}={v}" for k, v in s.items() if v is not None)
    return f"{kind}({params})"


def _outcome_summary(ds: Dataset, run_id: str) -> dict[str, Any]:
    episodes = ds.episodes(run_id)
    out: dict[str, Any] = {}
    for name in _OUTCOMES:
        if name not in episodes.column_names:
            continue
        col = episodes.column(name)
        valid = len(col) - col.null_count
        if not valid:
            out[name] = None
            continue
        values = col.to_numpy(zero_copy_only=False).astype(float)
        values = values[np.isfinite(values)]
        out[name] = {
            "mean": float(values.mean()) if values.size else None,
            "min": float(values.min()) if values.size else None,
            "max": float(values.max()) if values.size else None,
            "recorded": int(valid),
            "finite": int(values.size),
        }
    return out


def _table_rows(ds: Dataset, run_id: str) -> tuple[dict[str, int], dict[str, Any], list[str]]:
    """Readable rows per table, what skipped parts held per table, and uncounted writers."""
    readable: dict[str, int] = {}
    lost: dict[str, Any] = {}
    uncounted: set[str] = set()
    for table in ds.tables(run_id):
        health = ds.health(table, run_id)[0]
        readable[table] = health.rows_readable
        uncounted.update(health.writers_uncounted)
        for skipped in health.skipped:  # tables that inspect does not read warn here
            warnings.warn(skipped.warning(), DatasetWarning, stacklevel=2)
        if health.skipped or health.rows_missing:
            lost[table] = {
                "rows": health.rows_missing,
                "parts": [str(s) for s in health.skipped],
            }
    return readable, lost, sorted(uncounted)


def inspect_dataset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-friendly summary of the dataset at ``path``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetWarning)
        ds = open_dataset(path)
        runs = []
        for run in ds.runs():
            episodes = ds.episodes(run.run_id, columns=["env_id", "episode", "sample_id"])
            keys = episodes.group_by(["env_id", "episode"]).aggregate([])
            rows, lost, uncounted = _table_rows(ds, run.run_id)
            design = run.metadata.get("design")
            runs.append(
                {
                    "run_id": run.run_id,
                    "status": run.status,
                    "created": run.created,
                    "ended": run.ended,
                    "error": run.error,
                    "seed": run.metadata.get("seed"),
                    "num_envs": run.metadata.get("num_envs"),
                    "writers": len(run.writers),
                    "counts": run.counts,
                    "rows_readable": rows,
                    "rows_lost": lost,
                    "writers_uncounted": uncounted,
                    "episodes": episodes.num_rows,
                    "envs_with_episodes": len(pc.unique(episodes.column("env_id"))),
                    "episodes_repeated": episodes.num_rows - keys.num_rows,
                    "variations": [
                        {
                            "key": v["key"],
                            "mode": v["mode"],
                            "enabled": v["enabled"],
                            "sampler": _sampler_text(v),
                            "components": v.get("components", []),
                        }
                        for v in run.metadata.get("variations", [])
                    ],
                    "design": None
                    if design is None
                    else {
                        k: design.get(k)
                        for k in ("method", "base_size", "num_rows", "replicates", "second_order")
                    },
                    "outcomes": _outcome_summary(ds, run.run_id),
                }
            )
    skipped = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    skipped = list(dict.fromkeys(skipped))  # each table read warns again
    return {"dataset": str(ds.path), "runs": runs, "skipped": skipped}


def format_inspection(info: dict[str, Any]) -> str:
    """:func:`inspect_dataset` output as readable text."""
    lines = [f"dataset {info['dataset']}: {len(info['runs'])} run(s)"]
    for run in info["runs"]:
        lines.append("")
        lines.append(
            f"run {run['run_id']}  [{run['status']}]  seed={run['seed']}  "
            f"num_envs={run['num_envs']}  writers={run['writers']}"
        )
        if run["status"] == "running":
            lines.append(
                "  the run did not close (status 'running'): its writer was killed or is "
                "still writing; rows not yet in a closed part are not on disk"
            )
        elif run["status"] == "unknown":
            lines.append("  run.json is missing or unreadable: whether the run closed is unknown")
        if run["error"]:
            lines.append(f"  ended by error: {run['error']}")
        rows = ", ".join(f"{k} {v}" for k, v in sorted(run["rows_readable"].items()))
        lines.append(f"  rows readable: {rows or 'none'}")
        recorded = ", ".join(f"{k} {v}" for k, v in sorted(run["counts"].items()))
        if recorded and run["counts"] != run["rows_readable"]:
            lines.append(f"  rows the writers recorded: {recorded}")
        if run["writers_uncounted"]:
            lines.append(
                f"  writer(s) that left no final count (killed, still writing, or sidecar "
                f"missing): {', '.join(run['writers_uncounted'])}"
            )
        for table, lost in sorted(run["rows_lost"].items()):
            held = "unknown (no writer's final count)" if lost["rows"] is None else lost["rows"]
            where = (
                f"in {len(lost['parts'])} skipped part(s):"
                if lost["parts"]
                else "no file holds them (parts deleted or moved?)"
            )
            lines.append(f"  {table} rows not readable: {held}; {where}")
            lines += [f"    {part}" for part in lost["parts"]]
        lines.append(f"  episodes: {run['episodes']} over {run['envs_with_episodes']} env(s)")
        if run.get("episodes_repeated"):
            lines.append(
                f"  episodes recorded more than once: {run['episodes_repeated']} (the same env "
                "and episode in two parts; the analyses refuse the run until the extra parts "
                "are moved out)"
            )
        if run["design"]:
            d = run["design"]
            lines.append(
                f"  design: {d['method']} N={d['base_size']}, {d['num_rows']} rows x "
                f"{d.get('replicates') or 1} replicate(s)"
            )
        lines.append("  variations:")
        for v in run["variations"]:
            comps = f" [{', '.join(v['components'])}]" if v["components"] else ""
            off = "" if v["enabled"] else "  (disabled)"
            lines.append(f"    {v['key']:<24} {v['mode']:<8} {v['sampler']}{comps}{off}")
        lines.append("  outcomes:")
        for name, s in run["outcomes"].items():
            if s is None:
                lines.append(f"    {name:<12} not recorded")
            elif s["mean"] is None:
                lines.append(
                    f"    {name:<12} no finite value ({s['recorded']} episodes, all NaN or inf)"
                )
            else:
                missing = s["recorded"] - s["finite"]
                over = (
                    f"{s['finite']} of {s['recorded']} episodes; {missing} NaN or inf"
                    if missing
                    else f"{s['recorded']} episodes"
                )
                lines.append(
                    f"    {name:<12} mean {s['mean']:.4g}  min {s['min']:.4g}  "
                    f"max {s['max']:.4g}  ({over})"
                )
    if info["skipped"]:
        lines.append("")
        lines += [f"skipped: {s}" for s in info["skipped"]]
    return "\n".join(lines)
