"""`ObservablesRecorder`: a loop hook that records the learning-rule observables along training (thesis Section 6.3.3).

Reference: spec ch5_ch6 Sections 11.3 (epochs 0, 5, ..., 100; per layer the statistics averaged over every
validation stimulus) and 11.6 (unit subsampling and measurement noise); the file is goaldriven/observables/storage.py.

At each chosen epoch (step = first_step + epoch x steps_per_epoch; epoch 0 at step 0, before any update) the loop
hands the host control
(`next_stop`) and the recorder:
  1. computes the weight statistics of every observed layer's forward kernel (observables/layers.py);
  2. runs the validation set once through the strategy (`data.eval_dataset(global_batch_size, input_context)`, the
     KNNMonitor contract: batches with an optional 0/1 "weight" for padding; `inputs_fn(batch)` gives the model's
     input, default batch["images"]) and sums each stimulus' activation and activity-change statistics, weighted;
  3. divides by the number of stimuli and appends one row per (perturbation, layer, statistic) to
     `<workdir>/observables.h5` (chief only), logging one line with the time it took.

The perturbations (fraction, noise, seed) default to the unperturbed (1.0, 0.0, 0); more go to the same table.
Noise on activations and the activity change is drawn per (batch, replica) from the seed: deterministic for a given
strategy and batch size, not across them.

Resume: a run restarts from its last checkpoint at step s; rows of epochs after s may exist (recorded, then the run
was killed before the next checkpoint) and are dropped with a logged note (`storage.drop_epochs_after`), so the final
file is the one an uninterrupted run writes. A recording at step s happens before the loop's checkpoint at s, so a
run resumed at s already holds the epoch recorded at s.

Rules that alternate task and alignment updates (information alignment, spec ch5 5.3-5.4) spend `delay` loop steps
on the alignment alone, then two loop steps per task update: there `first_step` = the delay steps and
`steps_per_epoch` = 2 x the task's steps per epoch, so epoch e is the task optimizer's e-th epoch.
"""

# b: stimuli per replica, L: layers, S: statistics of a measure, P: perturbations
import os
import time
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from goaldriven import hooks
from goaldriven.observables import layers as observed
from goaldriven.observables import statistics as stats
from goaldriven.observables import storage

FILENAME = "observables.h5"
DEFAULT_EPOCHS = tuple(range(0, 101, 5))


class ObservablesRecorder(hooks.LoopHook):
    """Records the observables of every Conv2D / Dense layer at chosen epochs (module docstring).

    Args:
      data: the validation data, with `eval_dataset(*, global_batch_size, input_context)` (one finite pass).
      steps_per_epoch: loop steps per epoch (per task epoch: 2 x the updates under alternation).
      first_step: loop step at which the first epoch's task updates begin (the alignment-only delay steps, else 0).
      task, architecture, rule, batch_size, model_seed, dataset_seed, extra: the run's metadata (storage.RunInfo;
        batch_size is the training batch, a curriculum variable; seeds None = unseeded).
      epochs: the epochs to record (default 0, 5, ..., 100).
      statistics: names from `statistics.STATISTICS` (default the 24 admissible; `statistics.STATISTICS`: all 45).
      perturbations: (fraction, noise sigma, seed) triples (statistics.Perturbation).
      eval_batch_size: global batch of the validation pass (a multiple of the replica count).
      inputs_fn: batch -> model input (default batch["images"]).
      exclude_layers: layer names or paths not to observe.
      filename: the file in the workdir.
    """

    def __init__(
        self,
        data: Any,
        *,
        steps_per_epoch: int,
        first_step: int = 0,
        task: str,
        architecture: str,
        rule: str,
        batch_size: int,
        model_seed: int | None = None,
        dataset_seed: int | None = None,
        extra: dict | None = None,
        epochs: Sequence[int] = DEFAULT_EPOCHS,
        statistics: Sequence[str] = stats.ADMISSIBLE,
        perturbations: Sequence[tuple[float, float, int]] = ((1.0, 0.0, 0),),
        eval_batch_size: int = 256,
        inputs_fn: Callable[[Any], Any] | None = None,
        exclude_layers: Sequence[str] = (),
        filename: str = FILENAME,
    ):
        if not callable(getattr(data, "eval_dataset", None)):
            raise TypeError(f"data needs an eval_dataset(*, global_batch_size, input_context) method; got {data!r}.")
        if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a positive int. Received: {steps_per_epoch!r}")
        epochs = sorted({int(e) for e in epochs})
        if not epochs or epochs[0] < 0:
            raise ValueError(f"epochs must be a non-empty list of ints >= 0. Received: {epochs!r}")
        if not isinstance(first_step, int) or first_step < 0:
            raise ValueError(f"first_step must be an int >= 0. Received: {first_step!r}")
        self.data, self.steps_per_epoch, self.epochs = data, steps_per_epoch, epochs
        self.first_step = first_step
        self.run_info = storage.RunInfo(task, architecture, rule, batch_size, model_seed, dataset_seed, extra or {})
        self.statistics = stats.check_names(statistics)
        self.perturbations = [stats.Perturbation(float(f), float(n), int(s)) for f, n, s in perturbations]
        if len(set(self.perturbations)) != len(self.perturbations) or not self.perturbations:
            raise ValueError(f"perturbations must be distinct (fraction, noise, seed) triples; got {perturbations}")
        self.eval_batch_size = eval_batch_size
        self.inputs_fn = inputs_fn or (lambda batch: batch["images"])
        self.exclude_layers, self.filename = tuple(exclude_layers), filename
        self._wanted = stats.split(self.statistics)  # (weights [(fn, stat)], activations [(fn, stat)], change [fn])
        self._layers: list[observed.ObservedLayer] = []
        self._weights_fn = self._batch_fn = None
        self._epoch_of = {self.step_of(e): e for e in epochs}

    # -- loop hook ------------------------------------------------------------------------------------------------

    def step_of(self, epoch: int) -> int:
        """The loop step at which `epoch` is recorded."""
        return 0 if epoch == 0 else self.first_step + epoch * self.steps_per_epoch

    def epoch_at(self, step: int) -> int:
        """The last chosen epoch recorded at or before loop `step` (-1: none)."""
        done = [e for s, e in self._epoch_of.items() if s <= step]
        return max(done) if done else -1

    def next_stop(self, step: int) -> int | None:
        later = [s for s in self._epoch_of if s > step]
        return min(later) if later else None

    def on_train_begin(self, state: hooks.LoopState, step: int) -> None:
        self._prepare(state)
        path = self.path(state)
        if state.is_chief:
            infos = [storage.LayerInfo(o.name, o.kind, o.is_head) for o in self._layers]
            storage.create(path, self.run_info, infos, self.statistics)
            storage.drop_epochs_after(path, -1 if step == 0 else self.epoch_at(step), state.log)
            missing = [e for e in self.epochs if 0 < self.step_of(e) <= step]
            missing = sorted(set(missing) - set(storage.recorded_epochs(path)))
            if missing:
                state.log(f"{path}: epochs {missing} were not recorded before this resume (recorder added later?)")
        if step == 0 and 0 in self._epoch_of:
            self.record(state, 0)

    def on_loop_end(self, state: hooks.LoopState, step: int) -> None:
        if step in self._epoch_of and step > 0:
            self.record(state, step)

    def path(self, state: hooks.LoopState) -> str:
        return os.path.join(state.workdir, self.filename)

    # -- measuring -----------------------------------------------------------------------------------------------

    def _prepare(self, state: hooks.LoopState) -> None:
        if self._batch_fn is not None:
            return
        model, strategy = state.model, state.strategy
        self._layers = self._call_order(model, strategy, observed.observed_layers(model, self.exclude_layers))
        w_wanted, a_wanted, g_wanted = self._wanted

        @tf.function
        def weights_fn():
            if not w_wanted:
                return tf.zeros([len(self._layers), 0, len(self.perturbations)])
            out = []
            for i, o in enumerate(self._layers):
                kernel = tf.reshape(tf.cast(o.layer.kernel, tf.float32), [1, -1])  # (1, n)
                out.append(self._measure(kernel, w_wanted, i, "weights", 0)[0])
            return tf.stack(out)  # (L, Sw, P)

        def replica_fn(batch, batch_index):
            inputs = self.inputs_fn(batch)
            with observed.recording(self._layers, gradients=bool(g_wanted)) as rec:
                model(inputs, training=False)
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            key = tf.cast(batch_index, tf.int64) * 1024 + tf.cast(replica, tf.int64)
            b = tf.shape(tf.nest.flatten(inputs)[0])[0]
            weight = tf.cast(batch["weight"], tf.float32) if "weight" in batch else tf.ones([b])
            acts, changes = [], []
            for i, calls in enumerate(rec.calls):
                if not calls:
                    raise ValueError(f"observed layer {self._layers[i].name} was not called in this forward pass.")
                per_call_a, per_call_g = [], []
                for x, y, v in calls:
                    n_out = int(np.prod(y.shape[1:]))
                    if a_wanted:
                        per_call_a.append(self._measure(tf.reshape(y, [-1, n_out]), a_wanted, i, "activations", key))
                    if g_wanted:
                        n_in = int(np.prod(x.shape[1:]))
                        per_call_g.append(self._change(tf.reshape(v, [-1, n_in]), n_out, g_wanted, i, key))
                if a_wanted:
                    acts.append(_weighted_sum(tf.add_n(per_call_a) / len(calls), weight))  # (Sa, P)
                if g_wanted:
                    changes.append(_weighted_sum(tf.add_n(per_call_g) / len(calls), weight))  # (Sg, P)
            out = {"count": tf.reduce_sum(weight)}
            if acts:
                out["activations"] = tf.stack(acts)
            if changes:
                out["activity_change"] = tf.stack(changes)
            return out

        @tf.function
        def batch_fn(dist_batch, batch_index):
            out = strategy.run(replica_fn, args=(dist_batch, batch_index))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

        self._weights_fn, self._batch_fn = weights_fn, batch_fn

    def _dataset(self, strategy):
        return strategy.distribute_datasets_from_function(
            lambda ctx: self.data.eval_dataset(global_batch_size=self.eval_batch_size, input_context=ctx)
        )

    def _call_order(self, model, strategy, found: list) -> list:
        """`found` in the order the forward pass calls them, from a trace of the replica step (nothing runs)."""
        orders = []

        def probe(batch):
            with observed.recording(found, gradients=False) as rec:
                model(self.inputs_fn(batch), training=False)
            orders.append((list(rec.order), [len(calls) for calls in rec.calls]))
            return tf.constant(0)

        with observed.installed(found):
            tf.function(lambda b: strategy.run(probe, args=(b,))).get_concrete_function(
                self._dataset(strategy).element_spec
            )
        order, counts = orders[0]
        missing = [o.name for o, count in zip(found, counts) if not count]
        if missing:
            raise ValueError(f"observed layers {missing} are not called by the model's forward pass; exclude them.")
        return [found[i] for i in order]

    def _measure(self, x, wanted, layer: int, measure: str, key) -> tf.Tensor:
        """(b, Sw or Sa, P): each wanted (fn, stat) of x (b, n) under each perturbation."""
        per_p = []
        for p in self.perturbations:
            values = stats.unit_statistics(stats.perturb(x, p, layer, measure, key), wanted)
            per_p.append(tf.stack([values[w] for w in wanted], axis=1))
        return tf.stack(per_p, axis=2)

    def _change(self, v, n_out: int, fns, layer: int, key) -> tf.Tensor:
        """(b, Sg, P): gradavg_f of the column sums v (b, n_in) under each perturbation."""
        n_in = v.shape[1]
        per_p = []
        for p in self.perturbations:
            values = stats.activity_change(stats.perturb(v, p, layer, "activity_change", key), n_in, n_out, fns)
            per_p.append(tf.stack([values[fn] for fn in fns], axis=1))
        return tf.stack(per_p, axis=2)

    def measure(self, state: hooks.LoopState) -> dict[str, np.ndarray]:
        """{"weights": (L, Sw, P), "activations": (L, Sa, P), "activity_change": (L, Sg, P)} float64, and
        "stimuli": the number of validation stimuli, for the current weights."""
        self._prepare(state)
        strategy = state.strategy
        dataset = self._dataset(strategy)
        sums: dict[str, np.ndarray] = {}
        with observed.installed(self._layers):
            out = {"weights": self._weights_fn().numpy().astype(np.float64)}
            for index, dist_batch in enumerate(dataset):
                for k, v in self._batch_fn(dist_batch, tf.constant(index, tf.int64)).items():
                    sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64)
        count = float(sums.pop("count", 0.0))
        if count <= 0:
            raise ValueError("the validation data gave no stimuli (every weight 0 or an empty dataset).")
        out.update({k: v / count for k, v in sums.items()})
        out["stimuli"] = count
        return out

    def record(self, state: hooks.LoopState, step: int) -> None:
        """Measures the model at `step` and appends its rows (chief), logging the time it took."""
        began = time.perf_counter()
        epoch = self._epoch_of[step]
        measured = self.measure(state)
        w_wanted, a_wanted, g_wanted = self._wanted
        names = {
            "weights": [f"weights_{fn}_{s}" for fn, s in w_wanted],
            "activations": [f"activations_{fn}_{s}" for fn, s in a_wanted],
            "activity_change": [f"gradavg_{fn}" for fn in g_wanted],
        }
        index = {name: i for i, name in enumerate(self.statistics)}
        columns = {name: [] for name in storage.COLUMNS}
        for pi, p in enumerate(self.perturbations):
            for li in range(len(self._layers)):
                for measure, measure_names in names.items():
                    for si, name in enumerate(measure_names):
                        row = (epoch, li, index[name], p.fraction, p.noise, p.seed, measured[measure][li, si, pi])
                        for column, value in zip(storage.COLUMNS, row):
                            columns[column].append(value)
        if state.is_chief:
            storage.append(self.path(state), {k: np.asarray(v) for k, v in columns.items()})
        state.log(
            f"observables epoch {epoch} (step {step}): {len(self._layers)} layers x {len(self.statistics)} statistics "
            f"x {len(self.perturbations)} perturbation(s) over {int(measured['stimuli']):,} stimuli in "
            f"{time.perf_counter() - began:.2f} s"
        )


def _weighted_sum(values: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """sum_b weight_b values_b over stimuli of values (b, ...); padded stimuli (weight 0) count 0 even if NaN."""
    shape = [-1] + [1] * (values.shape.rank - 1)
    w = tf.reshape(weight, shape)
    return tf.reduce_sum(tf.where(w > 0, w * values, tf.zeros_like(values)), axis=0)
