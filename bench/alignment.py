"""Benchmark: training step time of each learning rule relative to backprop on the same model in the same run.

Reference: thesis Chapter 5 (spec ch5 3-5): a rule other than backprop replaces each layer's input gradient by a
backward kernel B (a custom-gradient conv/matmul, alignment/ops.py) and, for the rules with an alignment loss R,
adds R's computation and an alignment optimizer (Adam) on B. Targets of the issue:

    ratio(rule) = median over interleaved rounds of step time(rule) / step time(backprop)
    feedback alignment (fa), Kolen-Pollack (kp)                 ratio <= 1.10
    symmetric (sa)                                              ratio <= 1.25
    activation (aa), weight mirror (wm), information alignment (ia)  ratio <= 1.50

The step is the loop's real training step (`tasks.train_step.build_train_loop`, phase "both"): ImageClassificationTask
(cross-entropy, top-1/top-5) on one fixed random batch, the thesis' task optimizer (SGD, Nesterov momentum 0.9) on
the task variables, the default AlignmentTraining optimizer (Adam 1e-3) on the backward kernels, OneDeviceStrategy;
both optimizers are goaldriven's (fused_optimizers.py: Keras' update in one kernel per variable), as the gin files
bind them.
All rules are built and traced in one worker process, then timed interleaved: in each of `--rounds` rounds every
rule runs `--steps` single steps (rules in a rotated order), and a rule's ratio is the median over rounds of its
time over backprop's in the same round (paired, so drifts of the machine's load cancel). The process CPU time
ratio is reported too (less sensitive to other processes on the machine). `--repeats` runs the worker that many
times in fresh processes: the table gives the median and the min-max over them. Each rule also reports the
convolution ops of the step TensorFlow runs (after Grappler's pruning): forward Conv2D / input gradient
Conv2DBackpropInput / kernel gradient Conv2DBackpropFilter, the work a rule adds. `--op-profile` also profiles one
step of each rule (step_timing.op_profile) and prints its op time by kind (forward convs, input and kernel gradients,
matmuls, optimizer updates, other) over backprop's total op time: what the rule adds, and the conv floor under it.

`--profile [RULE ...]` times, for the named rules (none named: the rules missing their target), variants with parts
of R switched off (R = 0: the custom gradient only; decay only: + the alignment optimizer; real inputs instead of
noise; no null primitive; plain SGD instead of Adam on B; R on a quarter of the batch, `batch_fraction=0.25`) next to
backprop and the full rule, so the differences
show where the extra time goes. Results of other configurations already in `--out` are kept.

Usage: python bench/alignment.py [--models resnet18_v1 small_resnet8] [--image-size 64] [--batch 16]
       [--classes 100] [--rounds 15] [--steps 1] [--repeats 3] [--precision float32 mixed_bfloat16] [--jit]
       [--profile [RULE ...]] [--profile-only] [--op-profile] [--out bench/results/alignment.json]
"""

# b: batch, h/w: space, c: channels, k: classes
import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time

import step_timing  # bench/step_timing.py (scripts run from bench/)

from goaldriven import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = ("bp", "fa", "kp", "sa", "aa", "wm", "ia")
TARGETS = {"fa": 1.10, "kp": 1.10, "sa": 1.25, "aa": 1.5, "wm": 1.5, "ia": 1.5}
CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul")  # _Fused* counted as these
_NO_R = {"amp_weight": 0.0, "decay_weight": 0.0, "null_weight": 0.0, "sparse_weight": 0.0, "self_weight": 0.0}
# rule -> variants (label, overrides of the rule's fields), each switching off one more part of R
_SGD = {"alignment_optimizer": "sgd"}  # not a rule field: plain gradient descent instead of Adam on B
PROFILE_VARIANTS = {
    "fa": [],
    "kp": [("kp R=0 (tied update only)", {"decay_weight": 0.0})],
    "sa": [("sa R=0 (custom gradient only)", _NO_R), ("sa decay only", {"self_weight": 0.0}), ("sa, SGD on B", _SGD)],
    "aa": [
        ("aa R=0 (custom gradient only)", _NO_R),
        ("aa amp only (linear: no b conv)", {"sparse_weight": 0.0}),
        ("aa, SGD on B", _SGD),
        ("aa, R on 1/4 of the batch", {"batch_fraction": 0.25}),
    ],
    "wm": [
        ("wm R=0 (custom gradient only)", _NO_R),
        ("wm decay only", {"amp_weight": 0.0}),
        ("wm on real inputs (f reused, no noise)", {"input_noise": None}),
        ("wm, SGD on B", _SGD),
        ("wm, R on 1/4 of the batch", {"batch_fraction": 0.25}),
    ],
    "ia": [
        ("ia R=0 (custom gradient only)", _NO_R),
        ("ia decay only", {"amp_weight": 0.0, "null_weight": 0.0}),
        ("ia without null (no reconstruction)", {"null_weight": 0.0}),
        ("ia on real inputs (f reused, no noise)", {"input_noise": None}),
        ("ia, SGD on B", _SGD),
        ("ia, R on 1/4 of the batch", {"batch_fraction": 0.25}),
    ],
}


class RandomImages:
    """In-memory data for ImageClassificationTask: one fixed random batch, repeated (the benchmark times the step,
    not the input pipeline)."""

    def __init__(self, image_size: int, num_classes: int):
        self.image_size, self.num_classes = image_size, num_classes

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        del start_step
        b = input_context.get_per_replica_batch_size(global_batch_size)
        images = tf.random.stateless_normal([b, self.image_size, self.image_size, 3], [seed, 0])  # (b, h, w, 3)
        labels = tf.random.stateless_uniform([b], [seed, 1], maxval=self.num_classes, dtype=tf.int32)  # (b,)
        return tf.data.Dataset.from_tensors({"images": images, "labels": labels}).repeat()

    def eval_dataset(self, *, global_batch_size, input_context):
        raise NotImplementedError("the alignment benchmark only trains")

    def num_eval_examples(self) -> int:
        return 0


def make_rule(name: str, overrides: dict | None = None):
    """The rule `name` (an abbreviation of alignment.rules) with some fields replaced ("alignment_optimizer" is not a
    rule field and is ignored here)."""
    from goaldriven.alignment import rules  # pylint: disable=g-import-not-at-top

    fields = {k: v for k, v in (overrides or {}).items() if k != "alignment_optimizer"}
    rule = rules.get_rule(name)
    return dataclasses.replace(rule, **fields) if fields else rule


def conv_op_counts(run_first_step) -> dict:
    """Runs `run_first_step` (the call that traces the train loop) and counts the conv/matmul ops of the graphs
    TensorFlow runs after Grappler (dead gradients pruned, fusions applied). Under XLA these are the ops handed to
    the compiler, before XLA's own dead-code elimination (so unused gradients still count)."""
    from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top

    ctx = context.context()
    ctx.enable_run_metadata()
    try:
        run_first_step()
    finally:
        metadata = ctx.export_run_metadata()
        ctx.disable_run_metadata()
    counts = dict.fromkeys(CONV_OPS, 0)
    for function_graph in metadata.function_graphs:
        graph = function_graph.post_optimization_graph
        for node in list(graph.node) + [node for fn in graph.library.function for node in fn.node_def]:
            op = {"_FusedConv2D": "Conv2D", "_FusedMatMul": "MatMul"}.get(node.op, node.op)
            if op in counts:
                counts[op] += 1
    return counts


def build_step(
    model_name: str, rule, *, image_size: int, batch: int, classes: int, jit: bool, alignment_optimizer: str = "adam"
):
    """The loop's train step of `model_name` under `rule` ("adam" or "sgd" on the backward kernels); returns
    (run one step -> loss, conv op counts, info)."""
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf

    from goaldriven import fused_optimizers
    from goaldriven.alignment import training
    from goaldriven.models import zoo
    from goaldriven.tasks import image_classification, train_step

    keras.utils.set_random_seed(0)
    task = image_classification.ImageClassificationTask(
        model_fn=lambda: zoo.build_model(model_name, num_classes=classes, image_size=image_size, learning_rule=rule),
        dataset=RandomImages(image_size, classes),
    )
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    optimizers = {"adam": fused_optimizers.Adam, "sgd": fused_optimizers.SGD}
    alignment = training.AlignmentTraining(optimizer=optimizers[alignment_optimizer])
    with strategy.scope():  # as loop.run builds them
        model = task.build_model()
        opt = fused_optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True)
    train, _ = train_step.build_train_loop(task, model, opt, strategy, hooks=[alignment], jit_compile=jit)
    groups = training.variable_groups(model)
    iterator = iter(
        strategy.distribute_datasets_from_function(
            lambda ctx: task.train_dataset(global_batch_size=batch, input_context=ctx, start_step=0, seed=0)
        )
    )
    one = tf.constant(1)

    def run_one_step() -> float:
        return float(train(iterator, one)["loss"])

    began = time.perf_counter()
    ops = conv_op_counts(run_one_step)  # trace (and compile)
    info = {
        "trace_seconds": time.perf_counter() - began,
        "task_variables": len(groups.task),
        "alignment_variables": len(groups.align),
        "frozen_backward_kernels": len(groups.frozen),
        "tied_layers": len(groups.tied_layers),
        "conv_layers": sum(isinstance(layer, keras.layers.Conv2D) for layer in model._flatten_layers()),  # noqa: SLF001
    }
    return run_one_step, ops, info


def measure(
    model_name: str,
    variants: list,
    *,
    image_size: int,
    batch: int,
    classes: int,
    precision: str = "float32",
    jit: bool = False,
    rounds: int = 15,
    steps: int = 1,
    op_profile: bool = False,
) -> dict:
    """Builds every variant [(label, rule name, overrides)], then times them interleaved (module docstring).

    Returns {label: {"ms", "cpu_ms", "ratio", "cpu_ratio", "samples_ms", "samples_cpu_ms", "ops", ...}}: medians
    over rounds of the wall and process CPU milliseconds per step, and of the per-round ratios to the first variant.
    """
    import keras  # pylint: disable=g-import-not-at-top

    keras.mixed_precision.set_global_policy(precision)
    runners, out = {}, {}
    for label, name, overrides in variants:
        run, ops, info = build_step(
            model_name,
            make_rule(name, overrides),
            image_size=image_size,
            batch=batch,
            classes=classes,
            jit=jit,
            alignment_optimizer=(overrides or {}).get("alignment_optimizer", "adam"),
        )
        run()  # a second warm-up step (first runs of oneDNN primitives)
        runners[label] = run
        out[label] = {"rule": name, "overrides": overrides or {}, "ops": ops, **info}
        out[label].update(samples_ms=[], samples_cpu_ms=[])
    labels = list(runners)
    for r in range(rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            wall, cpu = [], []
            for _ in range(steps):
                began, began_cpu = time.perf_counter(), time.process_time()
                runners[label]()
                wall.append(1e3 * (time.perf_counter() - began))
                cpu.append(1e3 * (time.process_time() - began_cpu))
            out[label]["samples_ms"].append(statistics.median(wall))
            out[label]["samples_cpu_ms"].append(statistics.median(cpu))
    base = out[labels[0]]
    for entry in out.values():
        entry["ms"] = statistics.median(entry["samples_ms"])
        entry["cpu_ms"] = statistics.median(entry["samples_cpu_ms"])
        # paired: each round's time over the baseline's in the same round, so slow drifts of the load cancel
        entry["ratio"] = statistics.median(t / t0 for t, t0 in zip(entry["samples_ms"], base["samples_ms"]))
        entry["cpu_ratio"] = statistics.median(t / t0 for t, t0 in zip(entry["samples_cpu_ms"], base["samples_cpu_ms"]))
    if op_profile:
        for label in labels:
            out[label]["op_profile"] = step_timing.op_profile(runners[label])
    return out


def verdicts(ratios: dict) -> dict:
    """{label: {"ratio", "target", "pass"}} from the ratio to backprop per label; labels of TARGETS get a verdict."""
    table = {}
    for label, ratio in ratios.items():
        target = TARGETS.get(label)
        table[label] = {"ratio": ratio, "target": target, "pass": None if target is None else ratio <= target}
    return table


def _config_name(model: str, precision: str, jit: bool, image_size: int, batch: int) -> str:
    return f"{model} {image_size}px b{batch} {precision}{' jit' if jit else ''}"


def _ops_text(ops: dict) -> str:
    return f"{ops['Conv2D']}/{ops['Conv2DBackpropInput']}/{ops['Conv2DBackpropFilter']}"


def _print_op_kinds(rules: dict) -> None:
    """Each rule's profiled op time by kind, in units of backprop's total op time (first worker)."""
    base = rules["bp"]["op_profile"]["op_seconds"]
    kinds = [kind for kind, _ in step_timing.OP_KINDS] + ["other"]
    print(f"\n  op time by kind / bp's total op time ({base * 1e3:.0f} ms), one profiled step per rule:")
    print("  " + f"{'rule':5s} {'total':>6s} " + " ".join(f"{k[:11]:>11s}" for k in kinds))
    for rule, entry in rules.items():
        prof = entry["op_profile"]
        row = " ".join(f"{prof['kind_seconds'].get(k, 0.0) / base:11.3f}" for k in kinds)
        print(f"  {rule:5s} {prof['op_seconds'] / base:6.3f} {row}", flush=True)


def _time_table(worker, model, precision, jit, rules, repeats_count, settings, result) -> dict:
    """Times all rules in `repeats_count` workers, prints the table, appends it to result["configs"]."""
    name = _config_name(model, precision, jit, settings["image_size"], settings["batch"])
    repeats = []
    for i in range(repeats_count):
        repeats.append(worker(model, [(r, r, None) for r in rules], precision, jit))
        ratios = ", ".join(f"{r} {v['ratio']:.3f}" for r, v in repeats[-1].items())
        print(f"{name} worker {i + 1}/{repeats_count}: bp {repeats[-1]['bp']['ms']:.0f} ms; {ratios}", flush=True)
    table = verdicts({r: statistics.median(rep[r]["ratio"] for rep in repeats) for r in rules})
    for rule, row in table.items():
        ratios, cpu = [rep[rule]["ratio"] for rep in repeats], [rep[rule]["cpu_ratio"] for rep in repeats]
        row.update(ms=statistics.median(rep[rule]["ms"] for rep in repeats), ratio_min=min(ratios))
        row.update(ratio_max=max(ratios), cpu_ratio=statistics.median(cpu), ops=repeats[0][rule]["ops"])
    result["configs"].append({"model": model, "precision": precision, "jit": jit, **settings, "table": table})
    result["configs"][-1]["repeats"] = repeats
    print(f"\n{name}: median over {repeats_count} worker(s) of the per-round ratio to bp [min-max over workers]")
    print(f"  {'rule':5s} {'ms':>7s} {'ratio':>6s} {'spread':>13s} {'cpu':>6s} {'target':>6s} pass  conv/dx/dw ops")
    for rule, row in table.items():
        verdict = "-" if row["pass"] is None else ("yes" if row["pass"] else "NO")
        print(
            f"  {rule:5s} {row['ms']:7.1f} {row['ratio']:6.3f} [{row['ratio_min']:.3f}-{row['ratio_max']:.3f}] "
            f"{row['cpu_ratio']:6.3f} {row['target'] or '':>6} {verdict:4s}  {_ops_text(row['ops'])}",
            flush=True,
        )
    if "op_profile" in repeats[0]["bp"]:
        _print_op_kinds(repeats[0])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "alignment.json"))
    parser.add_argument("--models", nargs="+", default=["resnet18_v1"])
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds over all rules")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per rule and round (their median counts)")
    parser.add_argument("--repeats", type=int, default=1, help="worker processes per configuration (spread)")
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--jit", action="store_true", help="time with jit_compile=True (XLA) instead")
    parser.add_argument("--op-profile", action="store_true", help="also profile one step per rule: op time by kind")
    parser.add_argument(
        "--profile", nargs="*", choices=RULES[1:], help="time variants of these rules (no names: those missing targets)"
    )
    parser.add_argument(
        "--profile-only", action="store_true", help="keep the tables already in --out, (re)time only the profiles"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    common = {"image_size": args.image_size, "batch": args.batch, "classes": args.classes}
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(measure(**spec, **common, rounds=args.rounds, steps=args.steps)))
        return
    me = os.path.abspath(__file__)

    def worker(model, variants, precision, jit):
        spec = {"model_name": model, "variants": variants, "precision": precision, "jit": jit}
        spec["op_profile"] = args.op_profile
        flags = {**common, "rounds": args.rounds, "steps": args.steps}
        return step_timing.run_worker(
            [me, *(f"--{k.replace('_', '-')}={v}" for k, v in flags.items()), "--worker", json.dumps(spec)]
        )

    rules = ["bp", *(r for r in args.rules if r != "bp")]
    command = " ".join(["python", "bench/alignment.py", *sys.argv[1:]])
    settings = {**common, "rounds": args.rounds, "steps": args.steps, "repeats": args.repeats, "command": command}
    result = {"targets": TARGETS, "configs": [], "profiles": []}
    if os.path.exists(args.out):  # other configurations measured earlier are kept; the ones timed now replace theirs
        with open(args.out) as f:
            result = json.load(f)
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()}
    for model, precision in [(m, p) for m in args.models for p in args.precision]:
        name = _config_name(model, precision, args.jit, args.image_size, args.batch)
        same = lambda e: _config_name(e["model"], e["precision"], e["jit"], e["image_size"], e["batch"]) == name
        if args.profile_only:
            table = next((c["table"] for c in result["configs"] if same(c)), {})
        else:
            result["configs"] = [c for c in result["configs"] if not same(c)]
            result["profiles"] = [p for p in result["profiles"] if not same(p)]
            table = _time_table(worker, model, precision, args.jit, rules, args.repeats, settings, result)
            atomic_write.write_json(args.out, result)
        if args.profile is None:
            continue
        for rule in args.profile or [rule for rule, row in table.items() if row["pass"] is False]:
            variants = [("bp", "bp", None), (rule, rule, None)]
            variants += [(label, rule, overrides) for label, overrides in PROFILE_VARIANTS[rule]]
            out = worker(model, variants, precision, args.jit)
            rows = {label: {k: v[k] for k in ("ms", "ratio", "cpu_ratio", "ops")} for label, v in out.items()}
            result["profiles"] = [p for p in result["profiles"] if not (same(p) and p["rule"] == rule)]
            result["profiles"].append(
                {"model": model, "precision": precision, "jit": args.jit, "rule": rule, **settings, "variants": rows}
            )
            atomic_write.write_json(args.out, result)
            print(f"  profile {rule} (ms, ratio to bp, cpu ratio, conv/dx/dw ops):")
            for label, row in rows.items():
                print(
                    f"    {label:42s} {row['ms']:7.1f} {row['ratio']:6.3f} {row['cpu_ratio']:6.3f}  {_ops_text(row['ops'])}",
                    flush=True,
                )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
