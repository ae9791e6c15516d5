"""Binning long curves before the trend models."""

import numpy as np

from models.resample import bin_means


def test_short_curves_are_unchanged():
    s, v = np.arange(1, 436), np.linspace(1, 0, 435)
    bs, bv = bin_means(s, v, 500)
    assert bs is s and bv is v


def test_long_curves_become_bucket_means_at_existing_steps():
    s = np.arange(1, 20_001)
    v = np.sin(s / 1000.0)
    bs, bv = bin_means(s, v, 500)
    assert len(bs) == 500 and np.all(np.diff(bs) > 0) and bs[-1] == 20_000
    assert np.isin(bs, s).all()
    assert np.allclose(bv[0], v[:40].mean()) and np.allclose(bv[-1], v[-40:].mean())
    assert abs(bv.mean() - v.mean()) < 1e-3
