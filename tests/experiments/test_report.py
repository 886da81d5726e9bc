"""Report files on tiny synthetic predictions: every file written, tables and counts right."""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix

from ichkit.experiments.metrics import binary_metrics
from ichkit.experiments.report import (
    _confusion_counts,
    comparison_latex,
    comparison_markdown,
    plot_confusion,
    plot_reliability,
    plot_roc,
    write_report,
)

MODELS = {"good_model": 0.6, "my_model": 0.3, "weak": 0.0}  # name -> signal strength
THRESHOLDS = {0: 0.5, 1: 0.4}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DISCLAIMER = "Research software, not a medical device: not validated for clinical use"


def make_predictions(n_slices: int = 3, seed: int = 0) -> pd.DataFrame:
    """2 folds x 4 patients (one scan each, half with hemorrhage) x ``n_slices`` slices."""
    rng = np.random.default_rng(seed)
    rows = []
    for fold, threshold in THRESHOLDS.items():
        for patient in range(4):
            patient_id, scan_label = f"p{fold}{patient}", patient % 2
            for slice_index in range(n_slices):
                label = scan_label if slice_index == 0 else scan_label * int(rng.integers(0, 2))
                for model, signal in MODELS.items():
                    rows.append({
                        "model": model, "fold": fold, "path": f"{patient_id}/{slice_index}.png",
                        "patient_id": patient_id, "scan_id": f"{patient_id}-scan",
                        "slice_index": slice_index, "label": label,
                        "probability": signal * label + rng.uniform(0, 1 - signal),
                        "threshold": threshold, "ms_per_slice": 1.5,
                    })  # fmt: skip
    return pd.DataFrame(rows)


def make_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    records = []
    for (model, fold), part in predictions.groupby(["model", "fold"], sort=False):
        threshold = part["threshold"].iloc[0]
        scans = part.groupby("scan_id").agg(
            label=("label", "max"), probability=("probability", "max")
        )
        for level, table in (("slice", part), ("scan", scans)):
            values = binary_metrics(table["label"], table["probability"], threshold)
            records.append({"model": model, "level": level, "fold": fold, **values,
                            "threshold": threshold, "ms_per_slice": 1.5})  # fmt: skip
    return pd.DataFrame(records)


def make_summary(metrics: pd.DataFrame, *, pooled: bool = True) -> pd.DataFrame:
    """Per model and level: fold mean and sd, a pooled value (the fold mean here) with a
    made-up CI ('weak' has none), and 12 positives and 12 negatives. ``pooled=False``
    leaves the pooled values out (a summary of fold means only)."""
    rows = []
    for (model, level), part in metrics.groupby(["model", "level"], sort=False):
        row = {"model": model, "level": level, "n_folds": len(part), "n": 24,
               "n_positive": 12, "n_negative": 12}  # fmt: skip
        for metric in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1"):
            mean, std = part[metric].mean(), part[metric].std(ddof=1)
            row |= {f"{metric}_mean": mean, f"{metric}_std": std}
            if pooled:
                has_interval = model != "weak"
                row[f"{metric}_pooled"] = mean
                row[f"{metric}_ci_low"] = mean - 0.05 if has_interval else np.nan
                row[f"{metric}_ci_high"] = mean + 0.05 if has_interval else np.nan
        row |= {"ece": 0.1, "ms_per_slice": 1.5}
        rows.append(row)
    summary = pd.DataFrame(rows)
    best = summary.groupby("level")["auc_mean"].transform("max") == summary["auc_mean"]
    summary["delong_p"] = np.where(best, np.nan, 0.0004)
    summary["mcnemar_p"] = np.where(best, np.nan, 0.5)
    summary["paired_note"] = np.where(best, "reference", "")
    return summary


def best_models(summary: pd.DataFrame) -> dict[str, str]:
    return {
        level: part.loc[part["auc_mean"].idxmax(), "model"]
        for level, part in summary.groupby("level")
    }


@pytest.fixture(scope="module")
def tables():
    predictions = make_predictions()
    metrics = make_metrics(predictions)
    return predictions, metrics, make_summary(metrics)


@pytest.fixture(scope="module")
def report(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    written = write_report(
        out,
        *tables,
        title="Tiny <comparison>",
        config={"models": list(MODELS), "out": out, "cv": 2},
        notes=["skipped mobilenet: keras is not installed"],
    )
    return out, written


def test_write_report_writes_every_file(report):
    out, written = report
    expected = {"comparison.md", "comparison.tex", "report.html"}
    for level in ("slice", "scan"):
        expected |= {f"plots/roc_{level}.png", f"plots/reliability_{level}.png"}
        expected |= {f"plots/confusion_{model}_{level}.png" for model in MODELS}
    assert set(written) == expected
    for name, path in written.items():
        assert path == out / name
        assert path.stat().st_size > 0
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert not list(out.rglob("*.tmp"))


def test_html_shows_disclaimer_models_images_notes_and_config(report):
    out, written = report
    page = written["report.html"].read_text(encoding="utf-8")
    assert DISCLAIMER in page
    assert "Tiny &lt;comparison&gt;" in page
    for model in MODELS:
        assert model in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(sources) == sorted(name for name in written if name.endswith(".png"))
    assert all((out / source).is_file() for source in sources)
    assert "<li>skipped mobilenet: keras is not installed</li>" in page
    assert re.search(r"<pre>models:\n- good_model", page)
    assert "<strong>" in page  # the best AUC


def test_markdown_has_one_row_per_model_and_level_and_bolds_best_auc(tables):
    summary = tables[2]
    text = comparison_markdown(summary)
    assert text.index("### Slice level") < text.index("### Scan level")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    body = [line for line in rows if not line.startswith("| Model ")]
    assert len(body) == len(summary) == len(MODELS) * 2
    for level, best in best_models(summary).items():
        table = comparison_markdown(summary, level=level).splitlines()
        assert table[0].startswith("| Model | Accuracy |")
        bold = [line for line in table if "**" in line]
        assert len(bold) == 1 and bold[0].startswith(f"| {best} |")
        cells = bold[0].split(" | ")
        assert cells[6].startswith("**") and cells[-2] == "reference"  # no p against itself
    assert "0.0004" not in text and "<0.001" in text
    weak = next(line for line in rows if line.startswith("| weak |"))
    assert "±" not in weak and "–" not in weak  # a pooled value without interval: bare
    good = next(line for line in rows if line.startswith("| good_model |"))
    assert re.search(r"\d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)", good)
    assert "pooled out-of-fold test predictions" in text  # the caption names the estimator


def test_fold_means_are_shown_with_their_spread_never_with_a_pooled_interval(tables):
    text = comparison_markdown(make_summary(tables[1], pooled=False))
    assert "±" in text and "–" not in text
    assert "mean over folds" in text


def test_small_samples_are_marked_and_not_ranked(tables):
    summary = make_summary(tables[1]).assign(n=6, n_positive=2, n_negative=4)
    text = comparison_markdown(summary)
    assert "**" not in text  # nothing bolded as best
    assert text.count("too few to rank the models") == 2  # one per level
    good = next(line for line in text.splitlines() if line.startswith("| good_model |"))
    assert good.count("†") == 6  # every metric rests on fewer than 10 of a class


def test_markdown_rejects_unknown_level_and_missing_columns(tables):
    summary = tables[2]
    with pytest.raises(ValueError, match="'level' parameter of comparison_markdown.*'volume'"):
        comparison_markdown(summary, level="volume")
    with pytest.raises(ValueError, match=r"lacks columns \['auc_mean'\]"):
        comparison_markdown(summary.drop(columns="auc_mean"))


def test_latex_has_booktabs_rules_and_escapes_names(tables):
    text = comparison_latex(tables[2])
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{table}"):
        assert rule in text
    assert r"my\_model" in text and "my_model" not in text.replace(r"my\_model", "")
    assert r"95\%" in text and "--" in text
    assert "±" not in text and "–" not in text
    assert text.count(r"\textbf{") == 2  # one best AUC per level
    assert r"\textit{Slice level}" in text and r"\textit{Scan level}" in text


@pytest.mark.parametrize("level", ["slice", "scan"])
@pytest.mark.parametrize("model", list(MODELS))
def test_confusion_counts_match_scikit_learn(tables, model, level):
    predictions = tables[0]
    part = predictions[predictions["model"] == model]
    if level == "scan":
        part = part.groupby(["fold", "scan_id"]).agg(
            label=("label", "max"), probability=("probability", "max"), fold=("fold", "first")
        )
    predicted = part["probability"] >= part["fold"].map(THRESHOLDS)
    expected = confusion_matrix(part["label"], predicted, labels=[0, 1])
    counts = _confusion_counts(predictions, model=model, level=level)
    np.testing.assert_array_equal(counts, expected)


def test_single_slice_scans_make_no_scan_plots(tmp_path):
    predictions = make_predictions(n_slices=1, seed=3)
    metrics = make_metrics(predictions)
    summary = make_summary(metrics[metrics["level"] == "slice"])
    written = write_report(tmp_path, predictions, metrics, summary, title="Slices only")
    assert not [name for name in written if "scan" in name]
    assert {f"plots/confusion_{model}_slice.png" for model in MODELS} <= set(written)
    page = written["report.html"].read_text(encoding="utf-8")
    assert "<h2>Notes</h2>" not in page and "<h2>Configuration</h2>" not in page


def test_plots_check_their_arguments(tables, tmp_path):
    predictions = tables[0]
    with pytest.raises(ValueError, match="Unknown model 'my_modle'.*Did you mean 'my_model'"):
        plot_confusion(predictions, tmp_path / "c.png", model="my_modle")
    with pytest.raises(ValueError, match="'level' parameter of plot_roc.*Got 'volume'"):
        plot_roc(predictions, tmp_path / "r.png", level="volume")
    with pytest.raises(ValueError, match="'n_bins' parameter of plot_reliability.*Got 0"):
        plot_reliability(predictions, tmp_path / "b.png", n_bins=0)
    with pytest.raises(ValueError, match=r"lacks columns \['threshold'\]"):
        plot_roc(predictions.drop(columns="threshold"), tmp_path / "r.png")
    assert not list(tmp_path.iterdir())
