"""Biologically plausible learning rules as custom-gradient layers (thesis Chapter 5; spec ch5 sections 1-9).

* ops.py: pure custom-gradient ops `aligned_matmul`, `aligned_conv2d`, `aligned_depthwise_conv2d` (forward with W,
  input gradient with a separate backward kernel B).
* primitives.py: decay, amp, null, sparse, self (thesis Table 5.1, the reference code's convention).
* rules.py: `LearningRule` and the rules Backprop, FeedbackAlignment, WeightMirror, InformationAlignment,
  SymmetricAlignment, ActivationAlignment, KolenPollack; `get_rule("sa")`.
* layers.py: `AlignedDense`, `AlignedConv2D`, `AlignedSeparableConv2D` (take `rule=`) and the factories models use.
* scope.py: `learning_rule(rule)` (the factories' switch), `collect_alignment_losses()`.
* binding.py: `builds_under_rule` / `build_under_rule`, how every model builder receives `learning_rule` (None is
  backprop) and the check that each layer of the built model honours it.
* training.py: `AlignmentTraining` (alignment optimizer, alternation, delay, update noise, diagnostics) for
  `tasks.loop.run(hooks=[AlignmentTraining(...)])`, the loop hook of alignment/; diagnostics.py: per-layer angles and
  norm ratios.
"""
