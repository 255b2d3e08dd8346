"""Helpers for tests that run the real command line (`python -m reexam_jax.main`) on
a tiny model and a small synthetic piano-roll set."""
import os
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

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


def offline_env(**variables) -> Dict[str, str]:
  """The caller's environment, offline, on JAX's CPU backend, plus `variables`."""
  return dict(os.environ, no_proxy='*', http_proxy='http://0.0.0.0:9',
              https_proxy='http://0.0.0.0:9', JAX_PLATFORMS='cpu', **variables)


def run_main(*args, data_dir: Optional[str] = None, timeout: int = 600
             ) -> subprocess.CompletedProcess:
  """`python -m reexam_jax.main args` in the repository, offline, with default data
  directories under $REEXAM_DATA_DIR as the caller's environment sets them."""
  env = offline_env()
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


def free_port() -> int:
  """A TCP port that no one listens on now."""
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def run_processes(args, num_processes: int, devices: int, env: Optional[Dict[str, str]] = None,
                  prefixes: Optional[Sequence[Sequence[str]]] = None, timeout: int = 600
                  ) -> List[subprocess.CompletedProcess]:
  """One run of `python PREFIX args` as num_processes processes on localhost (gloo),
  each with `devices` CPU devices; their outcomes, by process id. prefixes: how python
  starts each process's command line (default `-m reexam_jax.main`; e.g.
  ('-c', SCRIPT, ...) for a wrapped main)."""
  # gRPC (the coordinator's transport) ignores no_proxy='*' and would send localhost
  # through offline_env's dead proxy; it honours no_grpc_proxy.
  env = dict(env or offline_env(), JAX_NUM_CPU_DEVICES=str(devices),
             no_grpc_proxy='localhost')
  prefixes = prefixes or [('-m', 'reexam_jax.main')] * num_processes
  port = free_port()
  multi = lambda i: ([f'--coordinator_address=localhost:{port}',
                      f'--num_processes={num_processes}', f'--process_id={i}']
                     if num_processes > 1 else [])
  procs = [subprocess.Popen([sys.executable, *prefixes[i], *map(str, args), *multi(i)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for i in range(num_processes)]
  outs = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=timeout)
    outs.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
  return outs
