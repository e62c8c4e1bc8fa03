"""Recurrent networks through the whole flow: the LSTM and GRU recipes trained, exported
(unrolled QONNX), lowered, simulated and generated, bit-exact against Brevitas, qonnx and the
RTL; random small cells from the QAT network (sizes, steps, bits) likewise; the lowering's
threshold derivation against brute force; bad graphs refused with one line."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.frontend.rnn import thresholds_of


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_reproduce_a_monotone_function_everywhere(seed):
    """count(acc >= T) + qmin equals the level at every accumulator in each row's range,
    levels reached or not (thresholds at lo or past hi)."""
    rng = np.random.default_rng(seed)
    rows = 6
    lo = rng.integers(-300, 0, rows)
    hi = lo + rng.integers(0, 600, rows)
    scale = rng.uniform(0.001, 0.2, rows)
    bias = rng.uniform(-3, 3, rows)
    qmin, qmax = -2, 3

    def level(r, acc):
        return np.clip(np.round(np.tanh(scale[r] * acc + bias[r]) * 2.6), qmin, qmax)

    t = thresholds_of(level, lo, hi, qmin, qmax)
    assert t.shape == (rows, qmax - qmin) and np.all(np.diff(t, axis=1) >= 0)
    for r in range(rows):
        acc = np.arange(lo[r], hi[r] + 1)
        got = (acc[:, None] >= t[r][None, :]).sum(axis=1) + qmin
        assert np.array_equal(got, level(np.full(len(acc), r), acc))
