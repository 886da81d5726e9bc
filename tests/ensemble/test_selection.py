"""Ensemble selection keeps the members that help on held-out predictions."""

import numpy as np
import pandas as pd

from ichkit.ensemble import select_members


def _labels(n=40, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat([0, 1], n // 2))


def test_a_weak_member_is_left_out_and_a_complementary_one_is_added():
    y = _labels()
    rng = np.random.default_rng(1)
    strong = np.clip(0.6 * y + 0.4 * rng.random(len(y)), 0, 1)
    noise = rng.random(len(y))
    partner = np.clip(0.55 * y + 0.45 * rng.random(len(y)), 0, 1)
    kept, reason = select_members(
        pd.DataFrame({"noise": noise, "strong": strong, "partner": partner}), y
    )
    assert kept[0] == "strong" and "noise" not in kept
    assert "held-out AUC" in reason and "n = 40 slices, 20 positive" in reason


def test_averaging_never_scores_below_the_best_member_on_the_rows_that_chose():
    from sklearn.metrics import roc_auc_score

    y = _labels(60, seed=3)
    rng = np.random.default_rng(4)
    table = pd.DataFrame({f"m{k}": np.clip(y * rng.random() + rng.random(60), 0, 2) / 2
                          for k in range(5)})  # fmt: skip
    kept, _ = select_members(table, y)
    best_single = max(roc_auc_score(y, table[c]) for c in table)
    assert roc_auc_score(y, table[kept].mean(axis=1)) >= best_single


def test_too_few_held_out_rows_keep_every_member_and_say_why():
    y = np.array([0, 0, 0, 1, 1, 0, 0, 0])
    kept, reason = select_members(pd.DataFrame({"a": y * 0.5, "b": 1 - y}), y)
    assert kept == ["a", "b"] and "too few" in reason and "2 positive" in reason
