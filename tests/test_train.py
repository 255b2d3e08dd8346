"""End-to-end training on real piano rolls: results.json contract, resumption, and
the offline quickstart. Real-data tests read $REEXAM_SHARED_DATA (default
<repo>/../shared/data) and skip when it is absent."""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from reexam_jax import errors
from reexam_jax import experiments
from reexam_jax import train
from reexam_jax.data import midi
from reexam_jax.models import outputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('REEXAM_SHARED_DATA', os.path.join(REPO, '..', 'shared', 'data'))
MIDI_DIR = os.path.join(SHARED, 'midi')
needs_midi = pytest.mark.skipif(
    not os.path.exists(os.path.join(MIDI_DIR, 'Nottingham.mat')),
    reason=f'Nottingham.mat not in {MIDI_DIR} (set REEXAM_SHARED_DATA)')

RESULT_KEYS = {'params', 'steps', 'valid_ll', 'test_ll', 'll_unit', 'step_time_ms_median',
               'compile_s', 'wall_s'}


def tiny_arg(**overrides) -> str:
  """A few steps of a small model on Nottingham, evaluating on two batches, as a config
  argument: 'num_steps=6,eval_every=3,...'."""
  arg = dict(num_steps=6, eval_every=3, checkpoint_every=3, log_every=3, tgt_len=20,
             eval_tgt_len=20, batch_size=4, eval_batch_size=4, max_eval_batches=2,
             iwae_samples=4, iwae_chunk=2, d_rnn=16, d_emb=16, d_lat=8, progress_bar=False)
  arg.update(overrides)
  return ','.join(f'{k}={v}' for k, v in arg.items())


def tiny_config(model, **overrides):
  """tiny_arg's config of `model` on the shared Nottingham data."""
  config = experiments.get_config('nottingham', model, tiny_arg(**overrides))
  config.unlock()
  config.data_dir = MIDI_DIR
  return config


@needs_midi
@pytest.mark.parametrize('model', ['f_rnn', 'f_srnn'])
def test_train_writes_results_contract(tmp_path, model):
  results = train.train_and_evaluate(tiny_config(model), str(tmp_path))
  on_disk = json.loads((tmp_path / 'results.json').read_text())
  assert RESULT_KEYS <= set(on_disk)
  assert on_disk['ll_unit'] == 'nats/88-note step'
  assert on_disk['steps'] == 6 and on_disk['test_ll'] == pytest.approx(results['test_ll'])
  assert on_disk['test_ll'] < 0 and math.isfinite(on_disk['test_ll'])
  if model == 'f_srnn':
    assert {'test_elbo', 'test_iwae', 'iwae_samples'} <= set(on_disk)
    # The importance-weighted bound is an average of >= ELBO-tight bounds: with 4 samples
    # it is above the single-sample ELBO up to Monte-Carlo noise of a tiny test set.
    assert on_disk['test_iwae'] > on_disk['test_elbo'] - 0.5
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines if 'valid_ll' in l] == [3, 6]
  assert all(math.isfinite(l['train_loss']) for l in lines if 'train_loss' in l)


@needs_midi
def test_delta_results_record_the_seeds_leaked_pitches(tmp_path):
  """delta-RNN random draws its split from the run seed and results.json says which
  elements (and MIDI pitches) leaked."""
  config = tiny_config('delta_rnn_random', seed=7, num_steps=2, eval_every=2,
                       checkpoint_every=2, log_every=2)
  train.train_and_evaluate(config, str(tmp_path))
  on_disk = json.loads((tmp_path / 'results.json').read_text())
  leak, _ = outputs.delta_split(88, 'random', d_leak=11, seed=7)
  assert on_disk['leaked_elements'] == leak.tolist()
  assert on_disk['leaked_pitches'] == [21 + i for i in leak.tolist()]


@needs_midi
def test_resume_matches_uninterrupted_run(tmp_path):
  """Removing the last checkpoint and re-running continues from the one before and ends
  with exactly the results of a run that was never stopped."""
  config = tiny_config('f_srnn')
  full = train.train_and_evaluate(config, str(tmp_path / 'full'))

  interrupted = tmp_path / 'interrupted'
  train.train_and_evaluate(config, str(interrupted))
  shutil.rmtree(interrupted / 'checkpoints' / '6')
  os.remove(interrupted / 'results.json')
  resumed = train.train_and_evaluate(config, str(interrupted))

  for key in ('valid_ll', 'test_ll', 'test_elbo', 'test_iwae', 'best_step'):
    assert resumed[key] == full[key], key
  metrics = lambda d: [json.loads(l) for l in (d / 'metrics.jsonl').read_text().splitlines()]
  assert metrics(interrupted) == metrics(tmp_path / 'full')


def test_missing_midi_file_is_named(tmp_path):
  with pytest.raises(errors.UserError, match=r'Nottingham\.pickle / Nottingham\.mat'):
    midi.load_midi('nottingham', str(tmp_path), download=False)


def test_quickstart_offline(tmp_path):
  """The README's main job on a few chorales, through the command line, with no network."""
  env = dict(os.environ, REEXAM_DATA_DIR=str(tmp_path / 'data'), no_proxy='*',
             http_proxy='http://0.0.0.0:9', https_proxy='http://0.0.0.0:9')
  cmd = [sys.executable, '-m', 'reexam_jax.main', f'--config={REPO}/configs/quickstart.py',
         f'--workdir={tmp_path / "run"}', '--config.max_pieces=24', '--config.num_steps=8',
         '--config.eval_every=4', '--config.batch_size=4', '--config.eval_batch_size=4',
         '--config.progress_bar=False']
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'test_ll:' in out.stdout
  results = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert results['dataset'] == 'bach_music21' and np.isfinite(results['test_ll'])
