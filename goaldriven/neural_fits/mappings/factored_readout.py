"""Spatially factored readout from a feature map to neural responses, trained with TF (thesis §2.5.6).

Model (eq. 2.12, bias from the reference code), per unit n, one set of weights for every time bin (temporally fixed):
    r_hat[i, n, t] = sum_{x, y, k} w_s[n, x, y] * w_c[n, k] * f[i, t, x, y, k] + b[n]
Loss (eq. 2.13) per batch B of stimuli, plus the optional penalties of factored_ops.py:
    L = (1 / |B|) * sum_t sum_{i in B} sum_n (r_hat[i, n, t] - r[i, n, t])^2
Training: Adam (lr 1e-4, beta 0.9 / 0.999, epsilon 1e-8 as TF1's AdamOptimizer), global batches of 64 stimuli
shuffled every epoch with `seed`, dropout 0.5 on the features during training only; the last partial batch of an epoch
is dropped (static shapes), prediction never drops data (the last batch is zero-padded, the padding discarded).
Initialisation as the reference: Glorot-uniform kernels with the reference kernel shapes, spatial [h, w, u, 1]
(limit sqrt(6 / (h*w*u + h*w))) and channel [c, u] (limit sqrt(6 / (c + u))); bias 1.0.

Schedule (spec A-4, the thesis gives no epoch count): `epochs` (default 1000) is a maximum; with validation_fraction
> 0 (default 0.1) a held-out fraction of the TRAINING stimuli (the first n_val of rng(seed).permutation(n)) is scored
(eq. 2.13, no dropout, no penalties) after every epoch, training stops after `patience` (default 20) epochs without a
lower validation loss and the best weights are restored. validation_fraction = 0 runs all epochs. At lr 1e-4 the fit
needs O(10^4) Adam steps (simulated 7x7x64 features, 16 units, 1500 stimuli: ~660 epochs, median test r 0.683; lr
1e-3: ~110 epochs, 0.687; noise ceiling 0.72): ~260 epochs at thesis scale; learning_rate=1e-3 for quick fits.

Data: x is a NumPy array or any array-like with `.shape` and `x[i:j]` slicing (e.g. an h5py dataset), read a batch at
a time (the next one in a background thread while the compiled step runs), never whole; y is read once.
Distribution: under `strategy` each replica gets a contiguous slice of the global batch; the per-replica loss is
divided by the GLOBAL batch size (and the penalties by the replica count), so the optimizer's all-reduced sum is the
gradient of eq. 2.13 for the global batch. Under the mixed_bfloat16 Keras policy the contraction runs in bfloat16 and
the variables, sums and loss stay float32.
"""

# n: stimuli, t: time bins, h/w: space, c: channels, u: units, b: batch
import concurrent.futures
import time

import keras
import numpy as np
import tensorflow as tf

from goaldriven.neural_fits.mappings import factored_ops
from goaldriven.neural_fits.mappings.base import Mapper


def _check_features(x, name: str = "x") -> tuple:
    if isinstance(x, (list, tuple)):
        x = np.asarray(x, np.float32)
    if not hasattr(x, "shape") or not hasattr(x, "__getitem__"):
        raise TypeError(
            f"{name} must be a NumPy array or an array-like with .shape and x[i:j] slicing "
            f"(e.g. an h5py dataset); got {type(x).__name__}."
        )
    shape = tuple(int(d) for d in x.shape)
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise ValueError(
            f"{name} must be features (n, h, w, c) or (n, t, h, w, c) with non-empty axes; got shape {shape}."
        )
    return x, shape


def _read_rows(x, rows: np.ndarray) -> np.ndarray:
    """x[rows] as float32 (b, ...) for SORTED rows, one x[i:j] slice per contiguous run (NumPy: fancy indexing)."""
    if isinstance(x, np.ndarray):
        return np.asarray(x[rows], np.float32)
    runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
    if len(runs) == 1:
        return np.asarray(x[rows[0] : rows[-1] + 1], np.float32)
    return np.concatenate([np.asarray(x[run[0] : run[-1] + 1], np.float32) for run in runs])


class FactoredReadout(Mapper):
    """Spatial mask x channel weights per unit (eq. 2.12), fit by Adam on eq. 2.13. A Mapper that overrides fit,
    predict and fit_predict_many (and so the Mapper's 2-D validation): x is a 4-D/5-D feature map.

    Args:
      spatial_l2, spatial_l1, channel_l2, channel_l1: L2 (lambda * sum w^2 / 2) and L1 scales per kernel.
      laplacian: scale of the Laplacian smoothness penalty on the spatial masks (needs h, w >= 3).
      group_sparsity: scale of sum_n ||w_s[n]||_2 ||w_c[n]||_1 (see factored_ops.py for the choice of groups).
      dropout: dropout rate on the features during training (thesis 0.5).
      learning_rate: Adam learning rate (thesis 1e-4).
      global_batch_size: stimuli per step over all replicas (thesis 64).
      epochs: maximum number of passes over the training stimuli.
      validation_fraction: fraction of the training stimuli held out for early stopping (0 = no early stopping).
      patience: epochs without a lower validation loss before stopping.
      bias_init: initial bias (reference 1.0), or "mean" for each unit's mean training response.
      contraction: "auto", "channels_first" or "full_kernel" (factored_ops.py; the same numbers either way).
      seed: initialisation, validation split, shuffling and dropout.
      jit_compile: compile the train and predict steps with XLA.
      strategy: a tf.distribute.Strategy (None = the default strategy, one device).
      verbose: print one line per epoch.
    Attributes after fit: spatial_masks (u, h, w), channel_weights (u, c), bias (u,), history
      {"loss", "penalty", "val_loss", "seconds"} (one entry per epoch), best_epoch (1-based).
    """

    needs_maps = True
    costly_fit = True

    def __init__(
        self,
        spatial_l2: float = 0.0,
        spatial_l1: float = 0.0,
        channel_l2: float = 0.0,
        channel_l1: float = 0.0,
        laplacian: float = 0.0,
        group_sparsity: float = 0.0,
        dropout: float = 0.5,
        learning_rate: float = 1e-4,
        global_batch_size: int = 64,
        epochs: int = 1000,
        validation_fraction: float = 0.1,
        patience: int = 20,
        bias_init: float | str = 1.0,
        contraction: str = "auto",
        seed: int = 0,
        jit_compile: bool = True,
        strategy: tf.distribute.Strategy | None = None,
        verbose: bool = False,
    ):
        self.spatial_l2, self.spatial_l1, self.channel_l2 = spatial_l2, spatial_l1, channel_l2
        self.channel_l1, self.laplacian, self.group_sparsity = channel_l1, laplacian, group_sparsity
        for name, scale in self.penalty_scales.items():
            if not np.isfinite(scale) or scale < 0:
                raise ValueError(f"{name} must be a finite scale >= 0; got {scale}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is a rate in [0, 1); got {dropout}.")
        if learning_rate <= 0 or global_batch_size < 1 or epochs < 1 or patience < 1:
            raise ValueError(
                "learning_rate must be > 0 and global_batch_size, epochs, patience >= 1; got "
                f"{learning_rate}, {global_batch_size}, {epochs}, {patience}."
            )
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1); got {validation_fraction}.")
        if not (bias_init == "mean" or isinstance(bias_init, (int, float))):
            raise ValueError(f"bias_init must be a number or 'mean'; got {bias_init!r}.")
        factored_ops.resolve_contraction(contraction, 1, 1, 1)  # Validates the name.
        self.dropout = dropout
        self.learning_rate, self.global_batch_size, self.epochs = learning_rate, global_batch_size, epochs
        self.validation_fraction, self.patience, self.bias_init = validation_fraction, patience, bias_init
        self.contraction, self.seed, self.jit_compile = contraction, seed, jit_compile
        self.strategy, self.verbose = strategy, verbose
        self.history, self.best_epoch = {}, 0
        self._weights = None  # (spatial (h, w, u), channel (c, u), bias (u,)) as NumPy after fit.

    @property
    def penalty_scales(self) -> dict:
        return {name: getattr(self, name) for name in factored_ops.PENALTY_NAMES}

    # ----------------------------------------------------------------------------------------------------------- fit
    def fit(self, x, y) -> "FactoredReadout":
        """x (n, h, w, c) with y (n, u), or x (n, t, h, w, c) with y (n, u, t); returns self."""
        x, shape = _check_features(x)
        y3 = self._check_targets(shape, y)
        n, t, (h, w, c), u = shape[0], y3.shape[2], shape[-3:], y3.shape[1]
        if self.laplacian and min(h, w) < 3:
            raise ValueError(f"the Laplacian penalty needs maps of at least 3x3; got {h}x{w}. Set laplacian=0.")
        strategy = self.strategy or tf.distribute.get_strategy()
        replicas = strategy.num_replicas_in_sync
        batch = self.global_batch_size
        if batch % replicas:
            raise ValueError(f"global_batch_size {batch} is not divisible by the {replicas} replicas of the strategy.")
        if self.jit_compile and replicas > 1 and all("CPU" in d.upper() for d in strategy.extended.worker_devices):
            raise ValueError(
                "jit_compile=True under a multi-replica CPU strategy fails in TensorFlow (keras-team/keras#18716: "
                "XLA cannot read a variable on another CPU device); set jit_compile=False or use one device."
            )
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(n)
        n_val = int(round(self.validation_fraction * n))
        val_rows, train_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        if len(train_rows) < batch:
            raise ValueError(
                f"{len(train_rows)} training stimuli (after holding out {n_val} for validation) are fewer than "
                f"global_batch_size={batch}; lower global_batch_size or validation_fraction."
            )
        bias0 = y3[train_rows].mean(axis=(0, 2)) if self.bias_init == "mean" else np.full(u, float(self.bias_init))
        lim_s, lim_c = np.sqrt(6.0 / (h * w * u + h * w)), np.sqrt(6.0 / (c + u))
        init = (
            rng.uniform(-lim_s, lim_s, (h, w, u)).astype(np.float32),
            rng.uniform(-lim_c, lim_c, (c, u)).astype(np.float32),
            bias0.astype(np.float32),
        )
        with strategy.scope():
            variables = [
                keras.Variable(v, dtype="float32", name=nm) for v, nm in zip(init, ("spatial", "channel", "bias"))
            ]
            optimizer = keras.optimizers.Adam(self.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
            optimizer.build(variables)
        self._variables, self._strategy, self._predict_fns = variables, strategy, {}
        train_step = self._make_train_step(strategy, optimizer, (batch // replicas, t, h, w, c))
        self._weights = None
        self.history = {"loss": [], "penalty": [], "val_loss": [], "seconds": []}
        best, best_weights, self.best_epoch, waited = np.inf, None, 0, 0
        steps = len(train_rows) // batch
        step = 0
        for epoch in range(1, self.epochs + 1):
            start = time.perf_counter()
            order = train_rows[rng.permutation(len(train_rows))]
            batches = [order[i * batch : (i + 1) * batch] for i in range(steps)]
            sums = np.zeros(2)
            for xb, yb in self._prefetch(x, y3, batches, replicas == 1):
                seed = tf.constant([self.seed, step], tf.int32)
                out = train_step(self._distribute(strategy, xb), self._distribute(strategy, yb), seed)
                sums += [float(out[0]), float(out[1])]
                step += 1
            self.history["loss"].append(float(sums[0] / steps))
            self.history["penalty"].append(float(sums[1] / steps))
            val_loss = np.nan
            if n_val:
                pred = self._predict_rows(x, val_rows, t, strategy)
                val_loss = float(np.mean(np.sum((pred - y3[val_rows]) ** 2, axis=(1, 2))))
            self.history["val_loss"].append(val_loss)
            self.history["seconds"].append(time.perf_counter() - start)
            if self.verbose:
                print(
                    f"FactoredReadout epoch {epoch}/{self.epochs}: loss {sums[0] / steps:.5g} penalty "
                    f"{sums[1] / steps:.4g} val_loss {val_loss:.5g} ({self.history['seconds'][-1]:.1f} s)",
                    flush=True,
                )
            if not n_val:
                self.best_epoch = epoch
                continue
            if val_loss < best:
                best, best_weights, self.best_epoch, waited = val_loss, [v.numpy() for v in variables], epoch, 0
            else:
                waited += 1
                if waited >= self.patience:
                    break
        if best_weights is not None:
            for v, value in zip(variables, best_weights):
                v.assign(value)
        self._weights = tuple(v.numpy() for v in variables)
        return self

    def _check_targets(self, shape: tuple, y) -> np.ndarray:
        y = np.asarray(y, np.float32)
        if len(shape) == 4 and y.ndim != 2:
            raise ValueError(f"x of shape {shape} (n, h, w, c) needs y of shape (n, u); got y of shape {y.shape}.")
        if len(shape) == 5 and (y.ndim != 3 or y.shape[2] != shape[1]):
            raise ValueError(
                f"x of shape {shape} (n, t, h, w, c) needs y of shape (n, u, t) with t = {shape[1]}; got {y.shape}."
            )
        if y.shape[0] != shape[0] or y.shape[1] < 1:
            raise ValueError(f"x has {shape[0]} stimuli but y of shape {y.shape} has {y.shape[0]} (or no units).")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf; drop or impute those stimuli/units before fitting.")
        return y if y.ndim == 3 else y[:, :, None]  # (n, u, t)

    @staticmethod
    def _prefetch(x, y3, batches: list, to_tensor: bool, pad_to: int = 0):
        """Yields (x rows (b, t, h, w, c), y rows (b, u, t) or None) per batch, loading the next batch in a thread.

        Each batch's rows are read in sorted order (the loss is a sum over the batch, so the order is irrelevant);
        x rows are zero-padded to `pad_to` rows, and with `to_tensor` the host-to-TF copy also happens in the thread.
        """
        batches = [np.sort(rows) for rows in batches]

        def load(rows):
            xb = _read_rows(x, rows)
            xb = xb if xb.ndim == 5 else xb[:, None]
            if xb.shape[0] < pad_to:
                xb = np.concatenate([xb, np.zeros((pad_to - xb.shape[0],) + xb.shape[1:], np.float32)])
            return tf.convert_to_tensor(xb) if to_tensor else xb

        if not batches:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(load, batches[0])
            for i, rows in enumerate(batches):
                xb = pending.result()
                if i + 1 < len(batches):
                    pending = pool.submit(load, batches[i + 1])
                yield xb, (None if y3 is None else y3[rows])

    @staticmethod
    def _distribute(strategy, array: np.ndarray):
        """Splits a global batch (b, ...) into contiguous per-replica slices."""
        replicas = strategy.num_replicas_in_sync
        if replicas == 1:
            return tf.convert_to_tensor(array)
        per = array.shape[0] // replicas
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(
                array[ctx.replica_id_in_sync_group * per : (ctx.replica_id_in_sync_group + 1) * per]
            )
        )

    def _compute_dtype(self) -> str:
        dtype = keras.mixed_precision.global_policy().compute_dtype
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(
                f"FactoredReadout supports the float32 and mixed_bfloat16 policies; got {dtype} compute "
                "(float16 would need loss scaling)."
            )
        return dtype

    def _make_train_step(self, strategy, optimizer, replica_shape: tuple):
        """A tf.function(x, y, seed) -> (data loss, penalty) for one global batch (means over the global batch)."""
        replicas, batch = strategy.num_replicas_in_sync, self.global_batch_size
        contraction = factored_ops.resolve_contraction(
            self.contraction, replica_shape[0], replica_shape[1], replica_shape[4]
        )
        compute_dtype, variables, rate = self._compute_dtype(), self._variables, self.dropout
        per_elements = int(np.prod(replica_shape))

        def replica_step(xb, yb, seed):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            offset = tf.cast(replica, tf.int32) * per_elements
            features = factored_ops.dropout(xb, rate, seed, offset)
            with tf.GradientTape() as tape:
                spatial, channel, bias = (v.value for v in variables)
                pred = factored_ops.factored_forward(
                    features, spatial, channel, bias, contraction=contraction, compute_dtype=compute_dtype
                )
                # Sum over this replica's stimuli / GLOBAL batch: the all-reduced (summed) gradient is that of eq. 2.13.
                data = tf.reduce_sum(tf.square(pred - yb)) / batch
                terms = factored_ops.penalty_terms(spatial, channel, self.penalty_scales)
                penalty = tf.add_n(list(terms.values())) / replicas if terms else tf.constant(0.0)
                loss = data + penalty
            grads = tape.gradient(loss, [v.value for v in variables])
            optimizer.apply_gradients(zip(grads, variables))
            return data, penalty

        step_fn = tf.function(replica_step, jit_compile=True) if self.jit_compile else replica_step

        @tf.function
        def train_step(xb, yb, seed):
            data, penalty = strategy.run(step_fn, args=(xb, yb, seed))
            reduce = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)  # noqa: E731
            return reduce(data), reduce(penalty)

        return train_step

    # ------------------------------------------------------------------------------------------------------- predict
    def _predict_rows(self, x, rows: np.ndarray, t: int, strategy) -> np.ndarray:
        """Predictions (len(rows), u, t) for sorted rows, in global batches zero-padded to a fixed size."""
        batch, replicas = self.global_batch_size, strategy.num_replicas_in_sync
        key = (t,) + tuple(int(d) for d in x.shape[-3:])
        if key not in self._predict_fns:
            self._predict_fns[key] = self._make_predict_step(strategy, (batch // replicas, t) + key[1:])
        predict_step = self._predict_fns[key]
        chunks = [rows[i : i + batch] for i in range(0, len(rows), batch)]
        out = []
        for chunk, (xb, _) in zip(chunks, self._prefetch(x, None, chunks, replicas == 1, pad_to=batch)):
            result = predict_step(self._distribute(strategy, xb))
            out.append(np.concatenate([r.numpy() for r in strategy.experimental_local_results(result)])[: len(chunk)])
        return np.concatenate(out)

    def _make_predict_step(self, strategy, replica_shape: tuple):
        contraction = factored_ops.resolve_contraction(
            self.contraction, replica_shape[0], replica_shape[1], replica_shape[4]
        )
        compute_dtype, variables = self._compute_dtype(), self._variables

        def replica_predict(xb):
            spatial, channel, bias = (v.value for v in variables)
            return factored_ops.factored_forward(
                xb, spatial, channel, bias, contraction=contraction, compute_dtype=compute_dtype
            )

        step_fn = tf.function(replica_predict, jit_compile=True) if self.jit_compile else replica_predict
        return tf.function(lambda xb: strategy.run(step_fn, args=(xb,)))

    def predict(self, x) -> np.ndarray:
        """x (n, h, w, c) -> (n, u); x (n, t, h, w, c) -> (n, u, t) (the same weights for every bin)."""
        if self._weights is None:
            raise RuntimeError("FactoredReadout.predict called before fit; call fit(x_train, y_train) first.")
        x, shape = _check_features(x)
        h, w, u = self._weights[0].shape
        if shape[-3:] != (h, w, self._weights[1].shape[0]):
            raise ValueError(
                f"x has maps {shape[-3:]} but the readout was fit on (h, w, c) = {(h, w, self._weights[1].shape[0])}."
            )
        t = shape[1] if len(shape) == 5 else 1
        pred = self._predict_rows(x, np.arange(shape[0]), t, self._strategy)  # (n, u, t)
        return pred if len(shape) == 5 else pred[:, :, 0]

    def fit_predict_many(self, x_train, ys_train: list, x_test) -> list:
        """One independent fit per target array in ys_train; returns the predictions on x_test for each."""
        return [self.fit(x_train, y).predict(x_test) for y in ys_train]

    def _fitted(self) -> tuple:
        if self._weights is None:
            raise RuntimeError("FactoredReadout has no weights yet; call fit(x_train, y_train) first.")
        return self._weights

    @property
    def spatial_masks(self) -> np.ndarray:
        """(u, h, w) spatial masks w_s."""
        return np.transpose(self._fitted()[0], (2, 0, 1)).copy()

    @property
    def channel_weights(self) -> np.ndarray:
        """(u, c) channel weights w_c."""
        return self._fitted()[1].T.copy()

    @property
    def bias(self) -> np.ndarray:
        """(u,) biases b."""
        return self._fitted()[2].copy()

    def penalties(self) -> dict:
        """The scaled penalty terms {name: float} (nonzero scales only) at the fitted weights."""
        spatial, channel, _ = self._fitted()
        terms = factored_ops.penalty_terms(tf.constant(spatial), tf.constant(channel), self.penalty_scales)
        return {name: float(value) for name, value in terms.items()}
