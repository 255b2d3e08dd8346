"""Helpers for tests that run the real command line (`python -m reexam_jax.main`) on
a tiny model and a small synthetic piano-roll set."""
import os
import subprocess
import sys
from typing import Dict, Optional

import numpy as np
import scipy.io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A few steps of a tiny F-RNN on the synthetic rolls: compilation dominates.
TINY = ('--config.num_steps=4', '--config.eval_every=2', '--config.checkpoint_every=2',
        '--config.log_every=2', '--config.batch_size=2', '--config.eval_batch_size=2',
        '--config.max_eval_batches=1', '--config.tgt_len=8', '--config.eval_tgt_len=8',
        '--config.model.d_rnn=8', '--config.model.d_emb=8', '--config.progress_bar=False')


def rolls(num: int, steps: int = 30, seed: int = 0):
  """num random binary piano rolls, each [steps, 88]."""
  rng = np.random.default_rng(seed)
  return [(rng.random((steps, 88)) < 0.1).astype(np.float64) for _ in range(num)]


def cell(seqs) -> np.ndarray:
  """A list of arrays as a MATLAB cell array (1-D object array)."""
  out = np.empty(len(seqs), dtype=object)
  out[:] = seqs
  return out


def write_mat(path, **splits) -> None:
  """A Boulanger-Lewandowski style .mat: `traindata`, `validdata`, `testdata` cell
  arrays of [T, 88] rolls (small defaults; a split passed replaces its default, None
  leaves the field out)."""
  fields = dict(traindata=rolls(6), validdata=rolls(2, seed=1), testdata=rolls(2, seed=2))
  fields.update(splits)
  scipy.io.savemat(str(path), {k: cell(v) for k, v in fields.items() if v is not None})


def run_main(*args, data_dir: Optional[str] = None, timeout: int = 600
             ) -> subprocess.CompletedProcess:
  """`python -m reexam_jax.main args` in the repository, offline, with default data
  directories under $REEXAM_DATA_DIR as the caller's environment sets them."""
  env = dict(os.environ, no_proxy='*', http_proxy='http://0.0.0.0:9',
             https_proxy='http://0.0.0.0:9', JAX_PLATFORMS='cpu')
  if data_dir is not None:
    args = (*args, f'--config.data_dir={data_dir}')
  return subprocess.run([sys.executable, '-m', 'reexam_jax.main', *map(str, args)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def snapshot(path) -> Optional[Dict[str, bytes]]:
  """Every file under path (relative name -> bytes), or None when path is missing."""
  path = str(path)
  if not os.path.exists(path):
    return None
  out = {}
  for root, dirs, files in os.walk(path):
    for name in dirs + files:
      full = os.path.join(root, name)
      rel = os.path.relpath(full, path)
      out[rel] = b'<dir>' if os.path.isdir(full) else open(full, 'rb').read()
  return out
