"""--mode=score: a run's best checkpoint scores each sequence of new files.

`score_files` reads a file or directory in the format of the run's own dataset
(`data.read_files`: the training normalisation), scores every sequence with
`evaluate.score_each` (the test scoring of `--mode=eval`, with its keys, over all
sequences) and writes WORKDIR/scores.csv atomically, one row per sequence:

  path         the file (and array, for an .npz of several) it came from
  steps        its scored steps: rows of a roll or array, audio samples after the
               stride (the first step is given, not scored: steps = length - 1)
  ll           total log-likelihood, nats (latent models: the ELBO, as test_ll)
  ll_per_step  ll / steps
  elbo, iwae   latent models: the ELBO and the IWAE bound (iwae_samples samples)

The summary's `ll` is in the dataset's units (evaluate.ll_unit): the sum of the `ll`
column normalised as test LL is, so on the files of the test split it is `--mode=eval`'s
test_ll.
"""
import csv
import io
import os
from typing import Any, Dict

import numpy as np

from reexam_jax import data as data_lib
from reexam_jax import evaluate
from reexam_jax import fileio
from reexam_jax import models
from reexam_jax import state as state_lib

CSV_FILE = 'scores.csv'


def score_files(config, workdir: str, path: str) -> Dict[str, Any]:
  """Scores the sequences at path with workdir's best parameters and writes
  workdir/scores.csv (module docstring). Returns dict(csv, sequences, ll, ll_unit, and
  iwae for latent models)."""
  names, seqs = data_lib.read_files(config, path)  # bad files fail before any restore
  model, params, _ = state_lib.restore_best(config, workdir)
  evaluator = evaluate.make_evaluator(config, model, {}, max_batches=0)
  scores = evaluate.score_each(config, evaluator, params, seqs,
                               state_lib.run_keys(config.seed)[2])
  latent = models.is_latent(config.model.name)
  header = ['path', 'steps', 'll', 'll_per_step'] + (['elbo', 'iwae'] if latent else [])
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(header)
  for i, (name, seq) in enumerate(zip(names, seqs)):
    ll, steps = scores['ll'][i], round(scores['elements'][i] / np.prod(seq.shape[1:]))
    row = [name, steps, f'{ll:.6f}', f'{ll / steps:.6f}']
    writer.writerow(row + ([f'{ll:.6f}', f'{scores["iwae"][i]:.6f}'] if latent else []))
  csv_path = os.path.join(workdir, CSV_FILE)
  fileio.write_text(csv_path, out.getvalue())
  norm = lambda v: evaluate.normalise(v.sum(), len(seqs), scores['elements'].sum(),
                                      config.normalisation)
  summary = dict(csv=csv_path, sequences=len(seqs), ll=norm(scores['ll']),
                 ll_unit=evaluate.ll_unit(config.normalisation, config.model.d_data,
                                          config.dataset))
  if latent:
    summary['iwae'] = norm(scores['iwae'])
  return summary
