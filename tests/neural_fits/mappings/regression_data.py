"""Small seeded regression problems shared by the mapping tests."""

# n: stimuli, p: features, u: units, t: time bins
import numpy as np


def linear_data(n, p, u, seed=0, n_test=9):
    """x (n, p), y (n, u) = 4 columns of x mixed + noise, and x_test (n_test, p)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + n_test, p)) + 2.0
    y = x[:, : min(p, 4)] @ rng.standard_normal((min(p, 4), u)) + rng.standard_normal((n + n_test, u))
    return x[:n], y[:n], x[n:]


def temporal_data(seed=4, n=30, t=4, p=6, u=3):
    """x (24, t, p), y (24, u, t) = a linear readout of each bin + noise, and x_test (6, t, p)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, p))
    y = np.einsum("ntp,pu->nut", x, rng.standard_normal((p, u))) + rng.standard_normal((n, u, t))
    return x[:24], y[:24], x[24:]
