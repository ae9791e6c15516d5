"""Pairing entropy (every step) with performance (every N steps) by the documented rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.align import align


def test_eval_pairs_with_next_rollout_entropy_and_last_falls_back():
    h = pd.Series(np.linspace(1.0, 0.5, 20), index=range(1, 21))  # verl: steps 1..20
    r = pd.Series([0.1, 0.3, 0.5, 0.6, 0.65], index=[0, 5, 10, 15, 20])  # step 0 = before any update
    al = align(h, r)
    assert list(al.steps) == [0, 5, 10, 15, 20]
    assert list(al.entropy_steps) == [1, 6, 11, 16, 20]
    assert al.entropy[0] == h[1]
    assert al.fallback_steps == (20,)
    assert al.unpaired_steps == () and al.max_gap == 1


def test_nonfinite_pairs_are_dropped_and_counted_never_padded():
    h = pd.Series([1.0, np.nan, 0.8, 0.7], index=[1, 2, 3, 4])
    r = pd.Series([0.1, 0.2, np.inf], index=[0, 1, 2])
    al = align(h, r)
    assert list(al.steps) == [0] and al.n_nonfinite == 2
    assert not np.isnan(al.entropy).any()


def test_sparse_entropy_uses_its_own_spacing_and_reports_unpaired():
    h = pd.Series([1.0, 0.9, 0.8], index=[10, 20, 30])  # logged every 10 steps
    r = pd.Series([0.1, 0.2, 0.3], index=[5, 18, 100])
    al = align(h, r)
    assert al.max_gap == 10
    assert list(al.entropy_steps) == [10, 20]
    assert al.unpaired_steps == (100,)
