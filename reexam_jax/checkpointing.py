"""Checkpoints of a training run; the only module that knows Orbax.

A checkpoint holds the train state (params, optimiser state, step), the best-on-valid
parameters, and a JSON record (best valid LL, the data position, the run's config) so a
restarted run continues exactly where it stopped. Orbax writes each step to a temporary
directory and renames it when complete: a killed run never leaves a partial checkpoint.
"""
import os
from typing import Any, Dict, Optional, Tuple

import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores {'state', 'best_params', 'record'} under `workdir/checkpoints`."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=('state', 'best_params', 'record'))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, best_params: Any, record: Dict[str, Any]) -> None:
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

  def wait(self) -> None:
    """Blocks until asynchronous saves are on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
