"""Downstream transfer tasks of thesis Chapter 3 (Section 3.6.8, Fig. 3.11; spec ch3 A5).

Linear readouts of a model's layers on five tasks: HvM object categorisation, position, pose and size (Majaj, Hong
et al. 2015), and DTD texture categorisation. Modules: images.py (64 px preparation), hvm.py and dtd.py (readers and
splits), readouts.py (PCA, LinearSVC / ridge, the C grid), evaluate.py (tasks, layers, splits, best layer),
report.py (results.json, table.md, the figure), run.py (the whole run from a model or a checkpoint; the entry point
`goaldriven-transfer` is goaldriven/transfer_eval.py). Data layouts and decisions: docs/transfer_tasks.md.
"""

from goaldriven.transfer.evaluate import TASK_ORDER, TASKS, TransferTask
from goaldriven.transfer.readouts import C_GRID, ReadoutConfig
from goaldriven.transfer.run import TransferConfig, TransferRun, evaluate_checkpoint, evaluate_model

__all__ = [
    "C_GRID",
    "TASKS",
    "TASK_ORDER",
    "ReadoutConfig",
    "TransferConfig",
    "TransferRun",
    "TransferTask",
    "evaluate_checkpoint",
    "evaluate_model",
]
