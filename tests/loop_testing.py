"""Loop hooks for tests."""

import os
import signal

from goaldriven import hooks


class SigtermAt(hooks.LoopHook):
    """Sends this process SIGTERM (a TPU preemption) when the loop reaches `step`."""

    def __init__(self, step):
        self.step = step

    def next_stop(self, step):
        return self.step if step < self.step else None

    def on_loop_end(self, state, step):
        del state
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
