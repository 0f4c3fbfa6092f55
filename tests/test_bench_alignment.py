"""Smoke test of bench/alignment.py: its worker on a tiny model (1 timed step), its verdicts on hand-made numbers.

The worker's op counts are checked against what each rule must add per conv layer L (thesis Section 5.8.1 and the
rules' R, alignment/rules.py): backprop runs L forward convs, L kernel gradients and L - 1 input gradients (the stem's
input gradient is pruned); information alignment adds, per layer, the forward conv on noise, the backward path's conv
on noise and its kernel gradient, and the reconstruction r_f = f B (a transposed conv) with its kernel gradient.
"""

# b: batch
import os
import statistics
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import alignment as bench_alignment  # noqa: E402  (bench/alignment.py, not the goaldriven.alignment package)

SMALL_RESNET8_CONVS = 9  # stem + 3 stages x 2 block convs + 2 projection shortcuts (small_resnets docstring)


@pytest.mark.slow  # about 12 s of CPU (two small ResNets traced)
def test_worker_times_every_rule_and_counts_the_extra_convolutions():
    rounds, steps = 1, 1
    out = bench_alignment.measure(
        "small_resnet8",
        [("bp", "bp", None), ("ia", "ia", None)],
        image_size=8,
        batch=2,
        classes=10,
        rounds=rounds,
        steps=steps,
    )
    assert set(out) == {"bp", "ia"}
    n = SMALL_RESNET8_CONVS
    for label, entry in out.items():
        assert entry["conv_layers"] == n
        assert len(entry["samples_ms"]) == len(entry["samples_cpu_ms"]) == rounds
        assert entry["ms"] == statistics.median(entry["samples_ms"]) and entry["ms"] > 0
        assert entry["ratio"] == pytest.approx(entry["ms"] / out["bp"]["ms"])  # one round: the ratio of the two times
    bp, ia = out["bp"]["ops"], out["ia"]["ops"]
    assert (bp["Conv2D"], bp["Conv2DBackpropInput"], bp["Conv2DBackpropFilter"]) == (n, n - 1, n)
    assert (ia["Conv2D"], ia["Conv2DBackpropInput"], ia["Conv2DBackpropFilter"]) == (3 * n, 2 * n - 1, 3 * n)
    assert out["bp"]["alignment_variables"] == 0
    assert out["ia"]["alignment_variables"] == n + 1  # one backward kernel per conv and for the logits layer


def test_verdicts_apply_the_issue_targets():
    table = bench_alignment.verdicts({"bp": 1.0, "fa": 1.105, "kp": 1.095, "sa": 1.25, "ia": 1.505, "x": 0.5})
    assert table["bp"] == {"ratio": 1.0, "target": None, "pass": None}
    assert table["fa"]["pass"] is False and table["kp"]["pass"] is True  # target 1.10
    assert table["sa"]["pass"] is True and table["ia"]["pass"] is False  # targets 1.25 and 1.5
    assert table["x"]["pass"] is None  # a profile variant: no target


def test_profile_variants_switch_off_parts_of_the_rule():
    wm = bench_alignment.make_rule("wm", {"input_noise": None})
    assert wm.input_noise is None and wm.amp_weight > 0  # the rest of the weight mirror rule is kept
    for rule, variants in bench_alignment.PROFILE_VARIANTS.items():
        for _, overrides in variants:
            assert type(bench_alignment.make_rule(rule, overrides)) is type(bench_alignment.make_rule(rule))
    assert not bench_alignment.make_rule("ia", bench_alignment.PROFILE_VARIANTS["ia"][0][1]).has_alignment_loss
