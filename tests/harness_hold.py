"""Holds runs at a checkpoint for the concurrency tests, in every process that loads this
module as a plugin (``HARNESS_PLUGINS=harness_tiny,harness_hold``; ``--jobs`` workers too).

A run whose directory holds a file named ``hold`` (put there by the test) stops before it
writes a checkpoint, creates ``held`` to say so, and waits until ``hold`` is gone or the
run is asked to stop (SIGTERM, SIGINT); waiting changes nothing a run computes.
"""
import time

from harness.api import RunContext

HOLD, HELD = "hold", "held"
_save_checkpoint = RunContext.save_checkpoint


def _held_save_checkpoint(self: RunContext, state: dict) -> None:
    if (self.run_dir / HOLD).exists():
        (self.run_dir / HELD).touch()
        while (self.run_dir / HOLD).exists() and not self._stop_requested():
            time.sleep(0.05)
    _save_checkpoint(self, state)


RunContext.save_checkpoint = _held_save_checkpoint
