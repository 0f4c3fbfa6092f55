"""Fine-tuning: a loop hook that starts a new run from another run's (or an imported release's) model weights.

    goaldriven-train --gin_file=<imported>/finetune.gin --workdir=/tmp/finetuned

`goaldriven-import` writes that `finetune.gin` (its config plus `EXTRA_HOOKS = [@warm_start.WarmStart()]`); any
experiment can add the hook the same way. Only the model's variables are read: the optimizer, the step and the
hooks' state (queues, memory banks, backward weights outside the model) start fresh. The weights are loaded when the
hook is built, before the loop restores its own workdir, so a fine-tuning run that is preempted resumes from its own
newest checkpoint, not from the starting weights again.
"""

from typing import Any, Mapping

from goaldriven import checkpointing, hooks


class WarmStart(hooks.LoopHook):
    """Sets the model's variables from `checkpoint` (a goaldriven checkpoint prefix, checkpoints/ folder or workdir).

    The model must be the one the checkpoint holds: same architecture and build options, hence the same gin config
    for the model (the task, optimizer and schedule may differ). A mismatch is an error naming the checkpoint.
    """

    def __init__(self, checkpoint: str):
        if not checkpoint:
            raise ValueError(
                "WarmStart needs a checkpoint: set WarmStart.checkpoint to a goaldriven checkpoint or workdir"
            )
        self.checkpoint = checkpoint
        self.prefix: str | None = None

    def build(self, state) -> Mapping[str, Any]:
        self.prefix = checkpointing.restore_model(state.model, self.checkpoint)
        return {}

    def on_train_begin(self, state, step: int) -> None:
        if step == 0:
            state.log(f"warm start: model weights from {self.prefix}")
