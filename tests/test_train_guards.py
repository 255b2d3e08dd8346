"""Training that never crashes on its own bookkeeping and never reports a silently wrong
number: checkpoints before any improvement, non-finite validation scores, non-finite
steps (stop with exit 3, or skip and count), strict JSON, byte-identical reruns.

Real runs go through the command line on a tiny Nottingham F-RNN (test_train.tiny_arg).
Faults are put in from outside the library: a `python -c` script wraps a function of
the package, then runs the command line in the same process."""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reexam_jax import config_checks
from reexam_jax import errors
from reexam_jax import experiments
from reexam_jax import models
from reexam_jax import state as state_lib
from reexam_jax import train
from test_train import MIDI_DIR, REPO, needs_midi, tiny_arg, tiny_config

PATCHED_MAIN = """
import sys
import numpy as np
from absl import app, flags
from reexam_jax import evaluate, main
from reexam_jax.data import batching
{patch}
sys.argv = ['reexam_jax.main'] + sys.argv[1:]
flags.mark_flag_as_required('config')
app.run(main.main)
"""

# Training batches at these (0-based) loop steps are NaN: updates BAD + 1 are non-finite.
NAN_BATCHES = """
make_train_stream = batching.make_train_stream
class NanBatches:
  def __init__(self, stream):
    self.stream = stream
  def batch(self, step):
    x, y = self.stream.batch(step)
    return (x + np.nan if step in {bad} else x), y
  def position(self, step):
    return self.stream.position(step)
batching.make_train_stream = lambda *a, **k: NanBatches(make_train_stream(*a, **k))
"""

# The first validation scores NaN, the second +inf, later ones are the real scores.
NONFINITE_VALIDATIONS = """
make_evaluator = evaluate.make_evaluator
def nonfinite_first(*a, **k):
  evaluator, fake = make_evaluator(*a, **k), iter([float('nan'), float('inf')])
  def scores(*b, **kw):
    out = evaluator(*b, **kw)
    return dict(out, elbo=next(fake, out['elbo']))
  return scores
evaluate.make_evaluator = nonfinite_first
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


@needs_midi
def test_nan_loss_stops_with_exit_3_and_keeps_last_good_checkpoint(tmp_path):
  out = run_cli(tmp_path, patch=NAN_BATCHES.format(bad={4}), num_steps=8,
                checkpoint_every=2, eval_every=4, log_every=2)
  assert out.returncode == 3, out.stderr[-3000:]
  assert out.stderr.strip().splitlines()[-1] == (
      'error: training diverged at step 5: non-finite NLL, gradient of core, output; '
      'the last checkpoint (step 4) is kept; --config.skip_nonfinite=True skips such '
      'steps instead')
  assert 'Traceback' not in out.stderr
  assert checkpoints(tmp_path) == [2, 4]  # nothing saved after the bad step
  assert max(l['step'] for l in metrics(tmp_path)) == 4
  assert not (tmp_path / 'results.json').exists()


@needs_midi
def test_skip_nonfinite_skips_and_counts(tmp_path):
  out = run_cli(tmp_path, patch=NAN_BATCHES.format(bad={1, 3, 4}),
                flags=['--config.skip_nonfinite=True'])
  assert out.returncode == 0, out.stderr[-3000:]
  assert ('skipped 2 non-finite step(s) up to step 6 (3 in all), the first at step 4: '
          'non-finite NLL, gradient of core, output') in out.stdout.splitlines()
  train_lines = [l for l in metrics(tmp_path) if 'train_loss' in l]
  assert [l['skipped_steps'] for l in train_lines] == [1, 2]
  assert all(math.isfinite(l['train_loss']) for l in train_lines)
  results = strict_json((tmp_path / 'results.json').read_text())
  assert results['skipped_steps'] == 3 and math.isfinite(results['test_ll'])


@needs_midi
def test_same_config_and_seed_give_identical_metrics(tmp_path):
  """Two fresh processes, same config and seed (random batches and dropout masks)."""
  for run in ('a', 'b'):
    out = run_cli(tmp_path / run, num_steps=4, log_every=1, eval_every=2)
    assert out.returncode == 0, out.stderr[-3000:]
  assert ((tmp_path / 'a' / 'metrics.jsonl').read_bytes()
          == (tmp_path / 'b' / 'metrics.jsonl').read_bytes())


def test_train_step_leaves_state_unchanged_on_nonfinite_batch():
  config = tiny_config('f_rnn')
  model = models.build_model(config.model)
  params = models.init_params(model, jax.random.key(0), config.model.d_data)
  optimizer = state_lib.make_optimizer(config)
  step = train.make_train_step(model, optimizer, config)
  before = jax.device_get(state_lib.initial_state(params, optimizer))
  fresh_state = lambda: jax.tree.map(jnp.asarray, before)  # the step donates its input
  unchanged = lambda state: jax.tree.all(jax.tree.map(
      np.array_equal, jax.device_get((state.params, state.opt_state)),
      (before.params, before.opt_state)))
  x = (np.random.default_rng(0).random((5, 4, 88)) < 0.1).astype(np.float32)  # [T, B, D]
  x_nan = x.copy()
  x_nan[2, 1, 3] = np.nan

  state, metrics = step(fresh_state(), x_nan, x, jax.random.key(1))
  assert int(state.step) == 1 and unchanged(state)
  assert float(metrics['nonfinite_steps']) == 1 and float(metrics['steps']) == 0
  assert float(metrics['loss']) == 0  # masked out of the window's sums
  assert train.nonfinite_message(jax.device_get(metrics['first_nonfinite'])) == (
      'step 1: non-finite NLL, gradient of core, output')

  state, metrics = step(fresh_state(), x, x, jax.random.key(1))
  assert int(state.step) == 1 and not unchanged(state)
  assert float(metrics['nonfinite_steps']) == 0 and float(metrics['steps']) == 1
  assert train.nonfinite_message(jax.device_get(metrics['first_nonfinite'])) is None


def test_nonfinite_message_names_the_first_step_and_its_terms():
  never = int(train.NO_STEP)
  first = dict(loss=dict(NLL=never, KL=9), grad=dict(core=9, output=12))
  assert train.nonfinite_message(first) == 'step 9: non-finite KL, gradient of core'
  first = dict(loss=dict(NLL=never, KL=never), grad=dict(core=never, output=never))
  assert train.nonfinite_message(first) is None


@pytest.mark.parametrize('field, value', [('learning_rate', 1e6), ('learning_rate', 0.0),
                                          ('end_learning_rate', 0.1)])
def test_unusable_learning_rate_is_refused(field, value):
  """lr=1e6 never produces a non-finite number (it ends at a test LL of about -3e6 per
  88-note step), so it is refused up front rather than left to the guard."""
  config = experiments.get_config('nottingham', 'f_rnn', f'{field}={value}')
  with pytest.raises(errors.UserError, match=f'^--config.{field}='):
    config_checks.check_optimizer(config)
  config_checks.check_optimizer(experiments.get_config('nottingham', 'f_rnn'))
