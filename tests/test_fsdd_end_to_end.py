"""Real audio end to end: F-RNN, RNN-flat and RNN-hier train for a few steps on a
small FSDD subset (configs/fsdd_*.py shrunk) and write results.json in nats/sample.

FSDD is read from $REEXAM_SHARED_DATA/speech/fsdd/recordings (default
<repo>/../shared/data); the tests skip when it is absent. The prepared copy goes to a
temporary directory, never next to the wavs. docs/fsdd.md has the full-size comparison.
"""
import importlib.util
import json
import math
import os

import pytest

from reexam_jax import train
from reexam_jax.data import speech

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('REEXAM_SHARED_DATA', os.path.join(REPO, '..', 'shared', 'data'))
FSDD = os.path.normpath(os.path.join(SHARED, 'speech', 'fsdd', 'recordings'))

pytestmark = pytest.mark.skipif(
    not os.path.isdir(FSDD),
    reason=f'FSDD recordings not found at {FSDD} (set REEXAM_SHARED_DATA)')

RESULT_KEYS = {'params', 'steps', 'valid_ll', 'test_ll', 'll_unit', 'step_time_ms_median',
               'compile_s', 'wall_s'}

# Tiny models, 4 steps, one evaluation batch; frames of 40 samples, 2 frames a chunk
# (the flat model: chunks of 80 samples).
TINY = ('max_files=120,num_steps=4,eval_every=4,checkpoint_every=4,log_every=2,'
        'batch_size=4,eval_batch_size=4,max_eval_batches=1,d_rnn=16,d_emb=16,n_mix=3')
CHUNKS = {'f_rnn': 'tgt_len=2,eval_tgt_len=2', 'rnn_hier': 'tgt_len=2,eval_tgt_len=2',
          'rnn_flat': 'tgt_len=80,eval_tgt_len=80'}


def fsdd_config(model, prepared_dir, arg=''):
  path = os.path.join(REPO, 'configs', f'fsdd_{model}.py')
  spec = importlib.util.spec_from_file_location(f'fsdd_{model}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(','.join(filter(None, [TINY, CHUNKS[model],
                                                    f'prepared_dir={prepared_dir}', arg])))
  config.data_dir = FSDD
  config.progress_bar = False
  return config


@pytest.fixture(scope='module')
def prepared_dir(tmp_path_factory):
  """One prepared FSDD subset shared by the tests of this module."""
  return str(tmp_path_factory.mktemp('fsdd_prepared'))


def test_configs_are_comparable():
  """Full-size configs: every model sees chunks of the same number of samples."""
  samples = {}
  for model in ('f_rnn', 'rnn_flat', 'rnn_hier'):
    path = os.path.join(REPO, 'configs', f'fsdd_{model}.py')
    spec = importlib.util.spec_from_file_location(f'fsdd_full_{model}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    assert config.data_dir == FSDD and config.dataset == 'fsdd'
    assert config.normalisation == 1 and config.tgt_len == config.eval_tgt_len
    samples[model] = (config.tgt_len * config.model.d_data, config.batch_size,
                      config.num_steps, config.seed)
  assert len(set(samples.values())) == 1, samples


@pytest.mark.parametrize('model', ['f_rnn', 'rnn_flat', 'rnn_hier'])
def test_fsdd_train_and_evaluate(model, prepared_dir, tmp_path):
  config = fsdd_config(model, prepared_dir)
  results = train.train_and_evaluate(config, str(tmp_path))
  on_disk = json.loads((tmp_path / 'results.json').read_text())
  assert RESULT_KEYS <= set(on_disk)
  assert on_disk['ll_unit'] == 'nats/sample'
  assert on_disk['dataset'] == 'fsdd' and on_disk['model'] == model
  assert on_disk['steps'] == 4 and on_disk['params'] > 0
  assert on_disk['test_ll'] == pytest.approx(results['test_ll'])
  assert math.isfinite(on_disk['test_ll']) and math.isfinite(on_disk['valid_ll'])
  assert not os.path.exists(os.path.join(FSDD, 'wav_folder'))  # corpus left untouched


def test_fsdd_streamed_from_disk_equals_in_memory(prepared_dir, tmp_path, monkeypatch):
  """stream_from_disk (the VCTK/Blizzard path) on real audio: training and evaluation
  read the lazy splits at most one batch of files at a time, and give exactly the
  numbers of the in-memory path fed the same batches (buffer_files = batch_size: the
  same FileStream, over lists)."""
  reads = []  # (split, files) of every lazy read
  take = speech.SpeechSplit.take

  def counting_take(split, indices):
    reads.append((split.name, len(indices)))
    return take(split, indices)

  monkeypatch.setattr(speech.SpeechSplit, 'take', counting_take)
  streamed_config = fsdd_config('f_rnn', prepared_dir, 'stream_from_disk=True')
  streamed = train.train_and_evaluate(streamed_config, str(tmp_path / 'streamed'))
  assert {split for split, _ in reads} == {'train', 'valid', 'test'}
  assert max(files for _, files in reads) <= streamed_config.batch_size

  reads.clear()
  in_memory = train.train_and_evaluate(
      fsdd_config('f_rnn', prepared_dir, f'buffer_files={streamed_config.batch_size}'),
      str(tmp_path / 'in_memory'))
  assert reads == []  # loaded lists: nothing read lazily
  for key in ('params', 'best_step', 'valid_ll', 'test_ll', 'test_sequences'):
    assert streamed[key] == in_memory[key], key
