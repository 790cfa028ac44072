"""bench/accuracy.py's CLINC150 oos rule: the threshold follows the in-scope budget, not the few oos rows."""
from __future__ import annotations

import numpy as np

from bench.accuracy import OOS_IN_SCOPE_SLACK, choose_oos_threshold


def validation_slice(oos_confidences: list[float]) -> tuple[np.ndarray, list[str], list[str]]:
    """200 in-scope rows, all right (2 at top probability 0.505, 198 at 0.95), plus oos rows as given."""
    labels = ["a", "b", "oos"]
    in_scope = [0.505] * 2 + [0.95] * 198
    rows = [[p, 1 - p, 0.0] for p in in_scope] + [[p, 1 - p, 0.0] for p in oos_confidences]
    return np.array(rows), labels, ["a"] * len(in_scope) + ["oos"] * len(oos_confidences)


def test_threshold_is_the_largest_within_the_in_scope_budget_whatever_the_oos_rows():
    chosen = []
    for oos in ([0.51, 0.52], [0.51, 0.6, 0.9], [0.99]):
        proba, labels, truth = validation_slice(oos)
        rule = choose_oos_threshold(proba, labels, truth)
        assert rule["val_in_scope_accuracy"] >= rule["val_in_scope_accuracy_no_threshold"] - OOS_IN_SCOPE_SLACK
        chosen.append(rule["threshold"])
    # 1 % of 200 rows = 2 rows may turn oos (those at 0.505), so 0.95 is the largest threshold allowed; the old
    # rule took the smallest threshold with the best oos recall (0.53 for the first slice).
    assert chosen == [0.95, 0.95, 0.95]
