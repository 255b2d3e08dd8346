"""Stopping training cleanly on SIGTERM or SIGINT.

Cluster schedulers (SLURM, TPU maintenance) announce preemption with SIGTERM and Ctrl-C
sends SIGINT. Inside `stop_signals()` either signal only records itself; the training
loop reads the record once per step on the host (a plain attribute, no device sync),
finishes the step, saves a checkpoint and stops, so the same command resumes exactly.
"""
import contextlib
import dataclasses
import signal
import threading
from typing import Iterator, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass
class StopRequest:
  """The first stop signal received inside `stop_signals()`, if any."""
  signum: Optional[int] = None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name


@contextlib.contextmanager
def stop_signals() -> Iterator[StopRequest]:
  """Within the block, SIGTERM and SIGINT set the yielded request's `signum` (the first
  one wins) instead of ending the process. Later signals are ignored too, so a second
  Ctrl-C while the checkpoint is written cannot interrupt the write; SIGKILL still
  ends the process at once, which Orbax's atomic checkpoints survive.

  The previous handlers come back on exit (SIG_DFL where the previous one was not set
  from Python). Python only lets the main thread set handlers: elsewhere the block
  changes nothing and `signum` stays None.
  """
  request = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield request
    return

  def record(signum, frame):  # pylint: disable=unused-argument
    if request.signum is None:
      request.signum = signum

  previous = {signum: signal.signal(signum, record) for signum in STOP_SIGNALS}
  try:
    yield request
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, signal.SIG_DFL if handler is None else handler)
