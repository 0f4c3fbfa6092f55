"""The per-layer observables of learning-rule identification: 45 raw statistics, 24 admissible (thesis Section 6.3.3).

Reference: spec ch5_ch6 Section 11.3 (names, order) and 11.6 (unit subsampling, measurement noise), A17-A19.

    measures    weights: the layer's forward kernel, all elements (one vector)
                activations: per stimulus, every non-batch unit of the layer's own output
    functions   raw x, abs |x|, sq x^2, elementwise first
    statistics  norm  ||f(x)||_2                   (L2 of the whole tensor: Frobenius for a kernel; A19)
                mean  mu = E f(x);   var  E (f(x) - mu)^2      (population)
                skew  3 (mu - median) / std        (Pearson's second coefficient; A19)
                kurtosis  E (f(x) - mu)^4 / var^2  (non-excess; A19)
                median, thirdquartile              (50th / 75th percentile, linear interpolation between order
                                                    statistics as np.percentile's default; the thesis code used
                                                    tf.contrib's default, A19: we take the interpolation that makes
                                                    the median of an even count the usual midpoint)
    activity change  v_i = d(sum_j y_j) / d x_i   per stimulus, x the layer's input, y its output, with the TRUE
                forward Jacobian (A17: aligned layers' backward kernels B never enter; alignment.scope.exact_gradients)
                gradavg_f = (1 / n_out) sum_i f(v_i)   (f applied to the Jacobian's column sums v_i, not to the single
                entries dy_j/dx_i: one backward pass per batch instead of a full Jacobian; for f = raw both agree)

Speed: median and third quartile come from one tf.sort per function (raw, and |x| only if a row has a negative
entry; x^2 reuses the |x| order). Sorting dominates a recording on CPU (KNet-sized network, 1,000 stimuli: ~12 s).

Activation and activity-change statistics are per stimulus (shape (b,)); the recorder averages them over stimuli.
A statistic can be NaN or infinite (skew of a constant layer): that is why only the 24 `ADMISSIBLE` ones are used.

Unit subsampling and measurement noise (`Perturbation`): a seeded random permutation keeps ceil(fraction * n) >= 1
units (weights: kernel elements; activations: non-batch units, the same for every stimulus; activity change: input
units of v), then N(0, sigma^2) noise is added per kept unit (per stimulus for activations and v) before f. The
subsampled activity change estimates the full sum: gradavg_f = (n_in / k) (1 / n_out) sum_{i kept} f(v_i + noise).
"""

# b: stimuli (batch), n: units, k: kept units
import dataclasses
import math

import tensorflow as tf

MEASURES = ("weights", "activations")
FUNCTIONS = ("raw", "abs", "sq")
STATS = ("norm", "mean", "var", "skew", "kurtosis", "median", "thirdquartile")
GRADAVG = tuple(f"gradavg_{fn}" for fn in FUNCTIONS)
STATISTICS = tuple(f"{m}_{fn}_{s}" for m in MEASURES for fn in FUNCTIONS for s in STATS) + GRADAVG
ADMISSIBLE = (
    *(f"weights_abs_{s}" for s in ("mean", "median", "norm", "thirdquartile", "var")),
    *(f"weights_raw_{s}" for s in ("mean", "median", "norm", "thirdquartile", "var")),
    *(f"weights_sq_{s}" for s in ("mean", "median", "thirdquartile")),
    *(f"activations_abs_{s}" for s in ("mean", "median", "norm", "thirdquartile")),
    *(f"activations_raw_{s}" for s in ("mean", "median", "norm", "thirdquartile")),
    *GRADAVG,
)
MEASURE_OF = {name: "activity_change" if name in GRADAVG else name.split("_")[0] for name in STATISTICS}
_MEASURE_CODE = {"weights": 1, "activations": 2, "activity_change": 3}


def check_names(names) -> tuple[str, ...]:
    """`names` as a tuple, each one of `STATISTICS` (else a ValueError naming the unknown ones)."""
    names = tuple(names)
    unknown = [n for n in names if n not in STATISTICS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(
            f"statistics must be distinct names from observables.statistics.STATISTICS; unknown or repeated: "
            f"{unknown or names}"
        )
    return names


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """Unit subsampling to `fraction` of the units (1.0: all) plus N(0, noise^2) per unit, both driven by `seed`."""

    fraction: float = 1.0
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0 or self.noise < 0 or int(self.seed) != self.seed:
            raise ValueError(f"a perturbation needs 0 < fraction <= 1, noise >= 0 and an int seed; received {self}.")

    def kept(self, n: int) -> int:
        return max(1, min(n, math.ceil(self.fraction * n)))

    @property
    def identity(self) -> bool:
        return self.fraction == 1.0 and self.noise == 0.0


def perturb(x: tf.Tensor, p: Perturbation, layer: int, measure: str, noise_key=0) -> tf.Tensor:
    """x (b, n) -> (b, k): the kept units (same for every row) plus noise (independent per entry).

    The permutation depends on (seed, layer, measure) only; the noise also on `noise_key` (an int or int tensor that
    distinguishes batches and replicas, so stimuli get independent noise).
    """
    if p.identity:
        return x
    n = x.shape[1]
    k = p.kept(n)
    code = tf.constant(1000 * layer + _MEASURE_CODE[measure], tf.int64)
    if k < n:
        order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([tf.constant(p.seed, tf.int64), code])))
        x = tf.gather(x, order[:k], axis=1)
    if p.noise:
        key = code + tf.cast(noise_key, tf.int64) * 1_000_003
        x = x + p.noise * tf.random.stateless_normal(
            tf.shape(x), tf.stack([tf.constant(p.seed, tf.int64), key]), dtype=x.dtype
        )
    return x


def _percentile(sorted_x: tf.Tensor, q: float) -> tf.Tensor:
    """Linear interpolation between order statistics (np.percentile's default) of each row of sorted (b, n)."""
    n = sorted_x.shape[1]
    position = q * (n - 1)
    lo = math.floor(position)
    hi = min(lo + 1, n - 1)
    weight = position - lo
    return sorted_x[:, lo] + weight * (sorted_x[:, hi] - sorted_x[:, lo])


def unit_statistics(x: tf.Tensor, wanted) -> dict[tuple[str, str], tf.Tensor]:
    """{(fn, stat): (b,)} for each (fn, stat) in `wanted`, over the n units of each row of x (b, n) (float32)."""
    x = tf.cast(x, tf.float32)
    wanted = list(wanted)
    fns = {fn for fn, _ in wanted}
    needs_order = {fn for fn, s in wanted if s in ("median", "thirdquartile", "skew")}
    values = {"raw": x, "abs": tf.abs(x), "sq": tf.square(x)}
    ordered = {}
    if "raw" in needs_order:
        ordered["raw"] = tf.sort(x, axis=1)
    if needs_order & {"abs", "sq"}:
        if "raw" in ordered:  # non-negative tensors (post-ReLU): |x| sorts like x, so skip the second sort
            raw_sorted = ordered["raw"]
            ordered["abs"] = tf.cond(
                tf.reduce_min(raw_sorted[:, 0]) >= 0, lambda: raw_sorted, lambda: tf.sort(values["abs"], axis=1)
            )
        else:
            ordered["abs"] = tf.sort(values["abs"], axis=1)
        ordered["sq"] = tf.square(ordered["abs"])  # x^2 is monotone on |x|: no second sort
    out = {}
    for fn in sorted(fns):
        v = values[fn]
        mean = tf.reduce_mean(v, axis=1)
        centred = v - mean[:, None]
        var = tf.reduce_mean(tf.square(centred), axis=1)
        computed = {"mean": lambda: mean, "var": lambda: var}
        computed["norm"] = lambda: tf.sqrt(tf.reduce_sum(tf.square(v), axis=1))
        computed["kurtosis"] = lambda: tf.reduce_mean(tf.square(tf.square(centred)), axis=1) / tf.square(var)
        computed["median"] = lambda: _percentile(ordered[fn], 0.5)
        computed["thirdquartile"] = lambda: _percentile(ordered[fn], 0.75)
        computed["skew"] = lambda: 3.0 * (mean - _percentile(ordered[fn], 0.5)) / tf.sqrt(var)
        for f, s in wanted:
            if f == fn:
                out[(f, s)] = computed[s]()
    return out


def activity_change(v: tf.Tensor, n_in: int, n_out: int, fns) -> dict[str, tf.Tensor]:
    """{fn: (b,)}: (n_in / k) (1 / n_out) sum_i f(v_i) over the k columns of v (b, k) (all inputs: k = n_in)."""
    v = tf.cast(v, tf.float32)
    scale = n_in / (v.shape[1] * n_out)
    funcs = {"raw": tf.identity, "abs": tf.abs, "sq": tf.square}
    return {fn: scale * tf.reduce_sum(funcs[fn](v), axis=1) for fn in fns}


def split(names) -> tuple[list, list, list]:
    """(weights [(fn, stat)], activations [(fn, stat)], activity change [fn]) wanted by `names`."""
    weights, activations, change = [], [], []
    for name in names:
        if name in GRADAVG:
            change.append(name.split("_")[1])
        else:
            measure, fn, stat = name.split("_")
            (weights if measure == "weights" else activations).append((fn, stat))
    return weights, activations, change


def jacobian_column_sums(layer_call, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(y, v): y = layer_call(x) and v = d(sum over all non-batch units of y)/dx per stimulus, same shape as x.

    Stimuli are independent in Dense and Conv2D layers (no batch coupling), so one backward pass of the batch sum
    gives every stimulus' own column sums (for a conv: one transposed conv). The caller enters
    `alignment.scope.exact_gradients()` so aligned layers use W, not B.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer_call(x)
        total = tf.reduce_sum(tf.cast(y, tf.float32))
    return y, tape.gradient(total, x)
