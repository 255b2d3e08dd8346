"""A trained run from Python (a notebook): `reexam_jax.load(workdir)`.

    run = reexam_jax.load('runs/my_midi')
    run.config.model.name                      # the config it was trained with
    run.log_prob([roll_a, roll_b])             # nats per sequence, as scores.csv's ll
    rolls = run.sample(num=2, steps=64, temperature=0.8)   # [2, 64, 88]

Nothing here has flags: the config is workdir/config.json, the parameters the best
checkpoint (`state.restore_best`), scoring is `evaluate.score_each` (what --mode=score
and --mode=eval compute) and sampling `models.sampling.sample` (what --mode=sample
draws). Sequences are in the dataset's raw form (data.to_model): [T, 88] piano rolls,
[T, D] arrays (standardised with the training data's stats, which are read from the
run's data_dir), or audio [N] at the prepared sample rate.
"""
from typing import Any, Dict, List, Optional, Sequence, Union

import jax
import numpy as np

from reexam_jax import data as data_lib
from reexam_jax import evaluate
from reexam_jax import sample as sample_lib
from reexam_jax import state as state_lib
from reexam_jax import workdir as workdir_lib
from reexam_jax.models import sampling


class TrainedModel:
  """A run's best-on-valid model: `config`, `log_prob`, `sample`."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.config = workdir_lib.load_config(workdir)
    self.model, self.params, self.record = state_lib.restore_best(self.config, workdir)
    self._evaluator = evaluate.make_evaluator(self.config, self.model, {}, max_batches=0)
    self._norm: Optional[Dict[str, Any]] = None

  def to_model(self, sequences) -> List[np.ndarray]:
    """Raw sequences (one array or a list of them) -> the model's (data.to_model)."""
    if isinstance(sequences, np.ndarray) and sequences.ndim <= 2:
      sequences = [sequences]
    if self._norm is None:
      self._norm = data_lib.training_normalisation(self.config)
    return [data_lib.to_model(self.config, self._norm, x, f'sequence {i}')
            for i, x in enumerate(sequences)]

  def log_prob(self, sequences: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
    """[N] total log-likelihood of each sequence, nats (latent models: the ELBO with
    --mode=eval's key), exactly the ll column of --mode=score on the same sequences."""
    seqs = self.to_model(sequences)
    return evaluate.score_each(self.config, self._evaluator, self.params, seqs,
                               state_lib.run_keys(self.config.seed)[2])['ll']

  def sample(self, num: int = 1, steps: int = 0, temperature: float = 1.0,
             seed: int = 0) -> np.ndarray:
    """num sequences of `steps` model steps (0: 4 * tgt_len), at `temperature`, in the
    data's form (sample.data_steps): [num, T, 88] rolls, [num, T, D] raw values, or
    [num, samples] normalised audio."""
    if temperature <= 0:
      raise ValueError(f'temperature must be > 0, got {temperature}')
    out = sampling.sample(self.model, self.params, jax.random.key(seed), num,
                          steps or 4 * self.config.tgt_len, temperature,
                          self.config.tgt_len)
    return sample_lib.data_steps(self.config, np.asarray(out['y']))


def load(workdir: str) -> TrainedModel:
  """The trained run in workdir (see the module docstring)."""
  return TrainedModel(workdir)
