"""What a data set holds: the summary ``ichkit data inspect`` prints."""

from __future__ import annotations

from typing import Any

import numpy as np

from ichkit.scans.dataset import ScanDataset
from ichkit.scans.errors import ScanReadError

__all__ = ["inspect", "format_inspection"]

#: How many implausible slices the summary names (the count covers them all).
N_IMPLAUSIBLE_NAMED = 10


def inspect(
    dataset: ScanDataset,
    *,
    duplicates: bool = False,
    plausibility: bool = False,
    random_state: int = 0,
) -> dict[str, Any]:
    """Counts and facts of a loaded data set, as JSON-ready values.

    Keys: ``layout, root, n_slices, n_patients, n_scans, n_positive, n_negative,
    n_unlabelled, subtypes`` (positive slices per subtype), ``ordered``,
    ``slices_per_scan`` (min/median/max), ``image_sizes`` ("HxW" -> slices),
    ``skipped`` (path and reason of each), ``notes``.

    With ``duplicates=True`` it also makes the default patient-grouped split
    (``patient_split``, 70/15/15, seeded by ``random_state``) and adds ``split``
    (patients and slices per part) and ``near_duplicates`` (pairs of near-identical
    slices that fall in different parts: they would inflate test accuracy).

    With ``plausibility=True`` it reads every slice through the plausibility gate
    (``ichkit.scans.plausibility``) and adds ``n_implausible`` (slices that do not look
    like head CT), ``implausible`` (the first ``N_IMPLAUSIBLE_NAMED`` of them: path and
    reason) and ``n_implausible_scans`` (scans that ``check_scan`` refuses). Nothing is
    dropped: training data stays as it is, the summary only says what a verdict would
    refuse. It is opt-in because it reads every pixel: 10 to 20 ms a 512x512 slice on
    top of decoding it (rsna-course-dev's 1,200 PNGs: 20 to 30 s, ct-ich-dev's 605
    JPEGs: about 20 s, on two busy cores), where the rest of the summary reads none.
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
    if duplicates:
        summary.update(_split_and_duplicates(dataset, random_state))
    if plausibility:
        summary.update(_implausible(dataset))
    return summary


def _implausible(dataset: ScanDataset) -> dict[str, Any]:
    """The slices and scans the plausibility gate would refuse (slices that cannot be
    read are left to ``skipped``)."""
    from ichkit.scans.plausibility import check_scan, check_slice

    position = {index: place for place, index in enumerate(dataset.table.index)}
    flagged: list[dict[str, str]] = []
    n_scans_refused = 0
    for _, rows in dataset.iter_scans():
        reasons = []
        for index in rows.index:
            try:
                reason = check_slice(dataset.read(position[index]))
            except ScanReadError:
                continue
            reasons.append(reason)
            if reason is not None:
                flagged.append({"path": str(rows.at[index, "path"]), "reason": reason})
        if reasons and check_scan([], reasons=reasons) is not None:
            n_scans_refused += 1
    return {
        "n_implausible": len(flagged),
        "implausible": flagged[:N_IMPLAUSIBLE_NAMED],
        "n_implausible_scans": n_scans_refused,
    }


def _split_and_duplicates(dataset: ScanDataset, random_state: int) -> dict[str, Any]:
    from ichkit.scans.duplicates import find_near_duplicates
    from ichkit.scans.splits import patient_split

    split = patient_split(dataset.groups, dataset.labels, random_state=random_state)
    parts = split.part_names()
    table = dataset.table.assign(part=parts)
    counts = {
        part: {"n_patients": int(rows["patient_id"].nunique()), "n_slices": len(rows)}
        for part, rows in table.groupby("part", sort=False)
    }
    pairs = find_near_duplicates(dataset, parts)
    columns = ["path_a", "path_b", "part_a", "part_b", "distance"]
    return {"split": counts, "near_duplicates": pairs[columns].to_dict("records")}


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
    if "n_implausible" in summary:
        lines.append(
            f"Implausible: {summary['n_implausible']} slices do not look like head CT "
            f"({summary['n_implausible_scans']} scans would be refused a verdict); kept "
            "in the data"
        )
        lines += [f"  - {item['path']}: {item['reason']}" for item in summary["implausible"]]
        if summary["n_implausible"] > len(summary["implausible"]):
            lines.append(f"  ... and {summary['n_implausible'] - len(summary['implausible'])} more")
    lines += [f"Note:       {note}" for note in summary["notes"]]
    if "split" in summary:
        parts = ", ".join(
            f"{part} {count['n_patients']} patients / {count['n_slices']} slices"
            for part, count in summary["split"].items()
        )
        lines.append(f"Split:      {parts}")
        pairs = summary["near_duplicates"]
        lines.append(f"Duplicates: {len(pairs)} near-identical pairs across parts")
        lines += [
            f"  - {pair['path_a']} ({pair['part_a']}) ~ {pair['path_b']} ({pair['part_b']}), "
            f"{pair['distance']} bits"
            for pair in pairs
        ]
    return "\n".join(lines)
