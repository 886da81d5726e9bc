"""What a data set holds: the summary ``ichkit data inspect`` prints."""

from __future__ import annotations

from typing import Any

import numpy as np

from scans.dataset import ScanDataset

__all__ = ["inspect", "format_inspection"]


def inspect(dataset: ScanDataset) -> dict[str, Any]:
    """Counts and facts of a loaded data set, as JSON-ready values.

    Keys: ``layout, root, n_slices, n_patients, n_scans, n_positive, n_negative,
    n_unlabelled, subtypes`` (positive slices per subtype), ``ordered``,
    ``slices_per_scan`` (min/median/max), ``image_sizes`` ("HxW" -> slices),
    ``skipped`` (path and reason of each), ``notes``.
    """
    table = dataset.table
    labels = table["label"]
    per_scan = table.groupby("scan_id").size()
    summary: dict[str, Any] = {
        "layout": dataset.layout,
        "root": str(dataset.root),
        "n_slices": len(table),
        "n_patients": int(table["patient_id"].nunique()),
        "n_scans": int(table["scan_id"].nunique()),
        "n_positive": int((labels == 1).sum()),
        "n_negative": int((labels == 0).sum()),
        "n_unlabelled": int(labels.isna().sum()),
        "n_positive_patients": int(table.loc[labels == 1, "patient_id"].nunique()),
        "subtypes": {name: int((table[name] == 1).sum()) for name in dataset.subtypes},
        "ordered": dataset.is_ordered,
        "slices_per_scan": {
            "min": int(per_scan.min()) if len(per_scan) else 0,
            "median": float(np.median(per_scan)) if len(per_scan) else 0.0,
            "max": int(per_scan.max()) if len(per_scan) else 0,
        },
        "image_sizes": _image_sizes(dataset),
        "n_skipped": len(dataset.skipped),
        "skipped": [{"path": item.path, "reason": item.reason} for item in dataset.skipped],
        "notes": list(dataset.notes),
    }
    return summary


def _image_sizes(dataset: ScanDataset) -> dict[str, int]:
    table = dataset.table
    if not {"height", "width"} <= set(table.columns):
        return {}
    sizes = table["height"].astype(str) + "x" + table["width"].astype(str)
    return {size: int(count) for size, count in sizes.value_counts().items()}


def format_inspection(summary: dict[str, Any]) -> str:
    """The summary as the lines a person reads."""
    lines = [
        f"Data set:   {summary['root']}",
        f"Layout:     {summary['layout']}",
        f"Slices:     {summary['n_slices']} in {summary['n_scans']} scans of "
        f"{summary['n_patients']} patients",
        f"Labels:     {summary['n_positive']} hemorrhage, {summary['n_negative']} normal, "
        f"{summary['n_unlabelled']} unlabelled "
        f"({summary['n_positive_patients']} patients with hemorrhage)",
    ]
    if summary["subtypes"]:
        counts = ", ".join(f"{name} {count}" for name, count in summary["subtypes"].items())
        lines.append(f"Subtypes:   {counts} (positive slices)")
    spread = summary["slices_per_scan"]
    order = "ordered" if summary["ordered"] else "loose (no slice order)"
    lines.append(
        f"Per scan:   {spread['min']}-{spread['max']} slices (median {spread['median']:g}), {order}"
    )
    if summary["image_sizes"]:
        sizes = ", ".join(f"{size} ({count})" for size, count in summary["image_sizes"].items())
        lines.append(f"Sizes:      {sizes}")
    lines.append(f"Skipped:    {summary['n_skipped']} files")
    lines += [f"  - {item['path']}: {item['reason']}" for item in summary["skipped"]]
    lines += [f"Note:       {note}" for note in summary["notes"]]
    return "\n".join(lines)
