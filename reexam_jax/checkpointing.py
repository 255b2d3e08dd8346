"""Checkpoints of a training run; the only module that knows Orbax.

A checkpoint holds the train state (params, optimiser state, step), the best-on-valid
parameters, and a JSON record (best valid LL, the data position, the run's config) so a
restarted run continues exactly where it stopped. Orbax writes each step to a temporary
directory and renames it when complete: a killed run never leaves a partial checkpoint,
and a save that fails (a full disk) leaves the previous one the latest.
"""
import contextlib
import logging
import os
import re
from typing import Any, Dict, Optional, Tuple

import orbax.checkpoint as ocp

from reexam_jax import workdir as workdir_lib


# TensorStore, which writes the arrays, reports a failed file write as a ValueError
# whose message ends in "[os_error_code='28']" (ENOSPC); Orbax's own writes raise OSError.
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")


def _os_error_code(error: Optional[BaseException]) -> Optional[int]:
  """The errno of a failed file write reported as either, else None."""
  if isinstance(error, OSError):
    return error.errno
  match = _OS_ERROR_CODE.search(str(error)) if isinstance(error, ValueError) else None
  return int(match.group(1)) if match else None


def is_failed_write_log(record: logging.LogRecord) -> bool:
  """True for a log record of a file write that failed with an OS error code, as
  Orbax's saving threads log them. The same failure reaches the caller as OSError from
  save() or wait(), so a command line that reports it may drop these records."""
  return (_os_error_code(record.exc_info[1] if record.exc_info else None) is not None
          or bool(_OS_ERROR_CODE.search(record.getMessage())))


def is_closed_loop_report(unraisable) -> bool:
  """True for the sys.unraisablehook report of TensorStore finishing a failed save's
  other writes after Orbax closed the event loop waiting for them (harmless: the
  failure itself reaches the caller as OSError)."""
  return (isinstance(unraisable.exc_value, RuntimeError)
          and str(unraisable.exc_value) == 'Event loop is closed')


class Checkpointer:
  """Saves and restores {'state', 'best_params', 'record'} under `workdir/checkpoints`
  (record: JSON, with the run's config under 'config')."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = os.path.join(os.path.abspath(workdir), workdir_lib.CHECKPOINT_DIR)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=('state', 'best_params', 'record'))

  @contextlib.contextmanager
  def _failed_writes_as_os_errors(self):
    """Re-raises a failed file write as OSError(errno, strerror, the checkpoint
    directory), once the other saving threads have ended (closing the manager: a
    Checkpointer whose save failed is done). The previous checkpoint stays the latest."""
    try:
      yield
    except (OSError, ValueError) as e:
      code = _os_error_code(e)
      if code is None:
        raise
      with contextlib.suppress(OSError, ValueError):  # the same failure, met elsewhere
        self.manager.close()
      raise OSError(code, os.strerror(code), self.directory) from e

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, best_params: Any, record: Dict[str, Any]) -> None:
    """Starts saving step in the background; a failed write of the previous save
    raises OSError here or in wait()."""
    with self._failed_writes_as_os_errors():
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          best_params=ocp.args.StandardSave(best_params),
          record=ocp.args.JsonSave(record)))

  def restore(self, state_template: Any, best_params_template: Any
              ) -> Tuple[Any, Any, Dict[str, Any]]:
    """The latest checkpoint, shaped and sharded like the templates."""
    step = self.manager.latest_step()
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(state_template),
        best_params=ocp.args.StandardRestore(best_params_template),
        record=ocp.args.JsonRestore()))
    return out['state'], out['best_params'], dict(out['record'])

  def restore_best_params(self, params_template: Any) -> Tuple[Any, Dict[str, Any]]:
    """The latest checkpoint's best parameters and record, shaped like the template
    (arrays or jax.ShapeDtypeStruct); the train state is not read."""
    step = self.manager.latest_step()
    out = self.manager.restore(step, args=ocp.args.Composite(
        best_params=ocp.args.StandardRestore(params_template),
        record=ocp.args.JsonRestore()))
    return out['best_params'], dict(out['record'])

  def wait(self) -> None:
    """Blocks until asynchronous saves are on disk (OSError if one failed)."""
    with self._failed_writes_as_os_errors():
      self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
