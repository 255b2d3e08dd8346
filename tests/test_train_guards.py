"""Training that never crashes on its own bookkeeping and never reports a silently wrong
number: checkpoints before any improvement, non-finite validation scores, strict JSON.

Real runs go through the command line on a tiny Nottingham F-RNN (test_train.tiny_arg).
Faults are put in from outside the library: a `python -c` script wraps a function of
the package, then runs the command line in the same process."""
import json
import math
import os
import subprocess
import sys

from test_train import MIDI_DIR, REPO, needs_midi, tiny_arg

PATCHED_MAIN = """
import sys
import numpy as np
from absl import app, flags
from reexam_jax import main, train
from reexam_jax.data import batching
{patch}
sys.argv = ['reexam_jax.main'] + sys.argv[1:]
flags.mark_flag_as_required('config')
app.run(main.main)
"""

# The first validation scores NaN, the second +inf, later ones are the real scores.
NONFINITE_VALIDATIONS = """
make_evaluator = train.make_evaluator
def nonfinite_first(*a, **k):
  evaluator, fake = make_evaluator(*a, **k), iter([float('nan'), float('inf')])
  def scores(*b, **kw):
    out = evaluator(*b, **kw)
    return dict(out, elbo=next(fake, out['elbo']))
  return scores
train.make_evaluator = nonfinite_first
"""


def run_cli(workdir, patch='', model='f_rnn', flags=(), **config):
  """The command line (`python -m reexam_jax.main`, or after `patch` when given) on a
  tiny run of `model` with config overrides -> CompletedProcess."""
  start = ['-c', PATCHED_MAIN.format(patch=patch)] if patch else ['-m', 'reexam_jax.main']
  cmd = [sys.executable, *start,
         f'--config={REPO}/configs/nottingham_{model}.py:{tiny_arg(**config)}',
         f'--config.data_dir={MIDI_DIR}', f'--workdir={workdir}', *flags]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def strict_json(text: str):
  """json.loads that refuses NaN and Infinity (JSON has neither)."""
  def refuse(name):
    raise ValueError(f'not JSON: {name}')
  return json.loads(text, parse_constant=refuse)


def metrics(workdir):
  return [strict_json(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]


def checkpoints(workdir):
  return sorted(int(p) for p in os.listdir(workdir / 'checkpoints') if p.isdigit())


@needs_midi
def test_checkpoint_before_first_validation(tmp_path):
  """A checkpoint before any validation saves the initial parameters as the best ones;
  they must not be the buffers the train step has donated."""
  out = run_cli(tmp_path, num_steps=4, checkpoint_every=2, eval_every=4, log_every=2)
  assert out.returncode == 0, out.stderr[-3000:]
  assert checkpoints(tmp_path) == [2, 4]
  assert strict_json((tmp_path / 'results.json').read_text())['best_step'] == 4


@needs_midi
def test_nonfinite_validation_is_null_and_never_best(tmp_path):
  """Validations at steps 2 (NaN) and 4 (+inf) are logged as null with a flag; the
  checkpoint at step 2 (no best yet) works, and step 6, the only finite one, is best."""
  out = run_cli(tmp_path, patch=NONFINITE_VALIDATIONS, checkpoint_every=2, eval_every=2,
                log_every=2)
  assert out.returncode == 0, out.stderr[-3000:]
  valid = [l for l in metrics(tmp_path) if 'valid_ll' in l]
  assert valid[:2] == [dict(step=2, valid_ll=None, nonfinite=['valid_ll']),
                       dict(step=4, valid_ll=None, nonfinite=['valid_ll'])]
  assert valid[2]['step'] == 6 and math.isfinite(valid[2]['valid_ll'])
  results = strict_json((tmp_path / 'results.json').read_text())
  assert results['best_step'] == 6 and results['valid_ll'] == valid[2]['valid_ll']
  assert 'nonfinite' not in results
