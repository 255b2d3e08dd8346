"""A user's own data end to end (issue #15): the wav/midi/array_folder configs and their
sizes, the prepared-data naming, fitting array models to the data, --mode=score against
--mode=eval, the Python API against both, sampled MIDI read back exactly, and one clear
line for bad input. Data are written here; runs are tiny (compilation dominates)."""
import csv
import glob
import json
import logging
import os

import jax
import numpy as np
import pytest

import reexam_jax
from reexam_jax import data as data_lib
from reexam_jax import errors
from reexam_jax import evaluate
from reexam_jax import experiments
from reexam_jax import models
from reexam_jax.data import midi_folder
from tests.cli_helpers import REPO, TINY, rolls, run_main, snapshot

OWN = ('wav_folder', 'midi_folder', 'array_folder')
FAMILIES = ('f_rnn', 'f_srnn', 'rnn_hier', 'rnn_flat')


def _params(config) -> int:
  model = models.build_model(config.model)
  shapes = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0),
                                                      config.model.d_data))
  return models.count_params(model, shapes)


def _load_config_file(dataset, model, arg=None):
  namespace = {}
  path = os.path.join(REPO, 'configs', f'{dataset}_{model}.py')
  exec(compile(open(path).read(), path, 'exec'), namespace)  # pylint: disable=exec-used
  return namespace['get_config'](arg)


@pytest.mark.parametrize('dataset', OWN)
@pytest.mark.parametrize('model', FAMILIES)
def test_config_files_laptop_and_paper_sizes(dataset, model):
  laptop = _load_config_file(dataset, model)
  paper = _load_config_file(dataset, model, 'size=paper')
  assert laptop.dataset == paper.dataset == dataset and laptop.data_dir == ''
  assert laptop.num_steps < paper.num_steps
  assert 0 < _params(laptop) < _params(paper)


def test_paper_size_is_the_papers_model():
  """midi_folder at size=paper is the paper's MIDI model (tests/test_configs.py counts)."""
  for model, count in (('rnn_hier', 1_865_217), ('f_rnn', 571_736), ('rnn_flat', 1_579_777)):
    config = _load_config_file('midi_folder', model, 'size=paper')
    assert _params(config) == count
    assert config.num_steps == experiments.get_config('jsb', model).num_steps


def test_size_is_checked():
  with pytest.raises(errors.UserError, match=r"size=huge: choose one of \('laptop', 'paper'\)"):
    experiments.get_config('midi_folder', 'f_rnn', 'size=huge')
  with pytest.raises(errors.UserError, match="no field 'size'"):
    experiments.get_config('jsb', 'f_rnn', 'size=paper')


def test_params_mode_reads_no_data(tmp_path):
  out = run_main('--config=configs/array_folder_rnn_hier.py', '--mode=params',
                 f'--config.data_dir={tmp_path / "missing"}', '--config.model.d_data=5')
  assert out.returncode == 0, out.stderr[-2000:]
  expected = _params(_load_config_file('array_folder', 'rnn_hier', 'd_data=5'))
  assert out.stdout.splitlines()[-1] == f'params: {expected}'
  assert not os.path.exists(tmp_path / 'missing')


def test_wav_folder_is_prepared_under_a_name_of_its_data(tmp_path, monkeypatch):
  monkeypatch.setenv('REEXAM_DATA_DIR', str(tmp_path / 'cache'))
  config = experiments.get_config('wav_folder', 'f_rnn')
  dirs = []
  for data_dir in (tmp_path / 'my digits', tmp_path / 'other' / 'my digits'):
    with config.unlocked():
      config.data_dir = str(data_dir)
    dirs.append(data_lib.prepared_dir(config))
  assert dirs[0] != dirs[1]
  for d in dirs:
    assert os.path.dirname(d) == str(tmp_path / 'cache' / 'prepared')
    assert os.path.basename(d).startswith('my_digits_') and 'fsdd' not in d
  with config.unlocked():
    config.prepared_dir = str(tmp_path / 'mine')
  assert data_lib.prepared_dir(config) == str(tmp_path / 'mine')


def test_wav_folder_preparation_prints_one_line(tmp_path, monkeypatch, capfd, caplog):
  """Preparing prints one line and loading one more; none of TFDS's notices (its
  warnings are absl log records, which pytest's handler would catch)."""
  import soundfile  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('REEXAM_DATA_DIR', str(tmp_path / 'cache'))
  rng = np.random.default_rng(0)
  for i in range(40):  # 36/2/2 at the 5% fractions
    soundfile.write(str(_mkdir(tmp_path / 'wavs') / f'{i:02d}.wav'),
                    rng.integers(-3000, 3000, 400).astype(np.int16), 8000, subtype='PCM_16')
  config = experiments.get_config('wav_folder', 'f_rnn')
  with config.unlocked():
    config.data_dir = str(tmp_path / 'wavs')
  for attempt in range(2):
    data_lib.load_dataset(config)
    out, err = capfd.readouterr()
    lines = out.splitlines()
    if attempt == 0:
      assert lines[0] == (f'preparing wav_folder from {tmp_path / "wavs"} in '
                          f'{data_lib.prepared_dir(config)} (once)')
      lines = lines[1:]
    assert lines == [f'data: wav_folder from {tmp_path / "wavs"}: 36/2/2 train/valid/test '
                     'sequences']
    assert err == ''
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _array_config(data_dir, model='f_rnn', **fields):
  config = experiments.get_config('array_folder', model)
  with config.unlocked():
    config.data_dir = str(data_dir)
    config.update(fields)
  return config


def test_array_models_are_fitted_to_the_data(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(10):
    np.save(_mkdir(tmp_path / 'real') / f'{i}.npy', rng.normal(size=(6, 3)))
    np.save(_mkdir(tmp_path / 'binary') / f'{i}.npy', rng.random((6, 5)) < 0.5)
  real = data_lib.fit_config(_array_config(tmp_path / 'real'))
  assert (real.model.d_data, real.model.head) == (3, 'gmm')
  binary = data_lib.fit_config(_array_config(tmp_path / 'binary'))
  assert (binary.model.d_data, binary.model.head) == (5, 'bernoulli')
  flat = data_lib.fit_config(_array_config(tmp_path / 'binary', 'rnn_flat'))
  assert (flat.model.d_data, flat.model.head) == (1, 'bernoulli')
  forced = data_lib.fit_config(_array_config(tmp_path / 'binary', kind='real'))
  assert forced.model.head == 'gmm'
  kept = _array_config(tmp_path / 'binary', fit_model_to_data=False)
  assert data_lib.fit_config(kept) is kept
  # Every model of the registry but the (pen, dx, dy) ones trains on fitted data: one
  # loss of each is finite.
  data = data_lib.load_dataset(real)
  for name in [n for n, spec in experiments.MODELS.items() if not spec.handwriting]:
    config = data_lib.fit_config(_array_config(tmp_path / 'real', name))
    model = models.build_model(config.model, 0)
    x = np.zeros((4, 2, config.model.d_data), np.float32)
    y = np.concatenate(data['train'])[:8].reshape(4, 2, -1)[..., :config.model.d_data]
    params = models.init_params(model, jax.random.key(0), config.model.d_data)
    out = model.apply({'params': params}, x, y, rngs={'latent': jax.random.key(1)})
    assert np.isfinite(np.asarray(out['log_prob'])).all(), name


def _mkdir(path):
  os.makedirs(path, exist_ok=True)
  return path


def _midi_folder(root, seed=0):
  """root with 8 .mid files split by list files (4/2/2) on a beat grid of 2 steps per
  quarter; returns the test files' paths."""
  names = {'train': [f'tr{i}' for i in range(4)], 'valid': ['va0', 'va1'],
           'test': ['te0', 'te1']}
  for split, keys in names.items():
    for key, roll in zip(keys, rolls(len(keys), steps=12 + 3 * len(keys), seed=seed)):
      roll[-1] = 0  # a silent last step, kept by write_midi's end marker
      midi_folder.write_midi(str(root / f'{key}.mid'), roll, steps_per_quarter=2)
    (root / f'{split}.txt').write_text('\n'.join(keys) + '\n')
  return [str(root / f'{k}.mid') for k in names['test']]


def test_midi_folder_score_equals_eval_and_the_api(tmp_path):
  data, run = _mkdir(tmp_path / 'data'), tmp_path / 'run'
  test_files = _midi_folder(data)
  held_out = _mkdir(tmp_path / 'held_out')
  for path in test_files:
    os.link(path, held_out / os.path.basename(path))
  args = ('--config=configs/midi_folder_f_rnn.py', f'--workdir={run}', *TINY,
          f'--config.data_dir={data}', '--cpu_tuning=off')
  for mode in ('train', 'eval'):
    out = run_main(*args, f'--mode={mode}')
    assert out.returncode == 0, out.stderr[-3000:]
  test_ll = json.load(open(run / 'eval_results.json'))['test_ll']

  out = run_main(*args, '--mode=score', f'--score_input={held_out}')
  assert out.returncode == 0, out.stderr[-3000:]
  rows = list(csv.DictReader(open(run / 'scores.csv')))
  assert [r['path'] for r in rows] == sorted(str(held_out / os.path.basename(p))
                                             for p in test_files)
  steps = np.array([int(r['steps']) for r in rows])
  ll = np.array([float(r['ll']) for r in rows])
  np.testing.assert_allclose(ll / steps, [float(r['ll_per_step']) for r in rows], rtol=1e-5)
  lengths = [len(midi_folder.read_midi(r['path'], steps_per_quarter=2)) for r in rows]
  assert steps.tolist() == [n - 1 for n in lengths]  # the first step is given
  # Test LL is nats per 88-note step: the steps-weighted mean of the rows.
  np.testing.assert_allclose(ll.sum() / steps.sum(), test_ll, rtol=1e-5)
  assert f'll {test_ll:.4f} nats/88-note step' in out.stdout

  loaded = reexam_jax.load(str(run))
  assert loaded.config.dataset == 'midi_folder' and loaded.config.model.name == 'f_rnn'
  seqs = [midi_folder.read_midi(r['path'], steps_per_quarter=2) for r in rows]
  np.testing.assert_allclose(loaded.log_prob(seqs), ll, rtol=1e-5)
  samples = loaded.sample(num=2, steps=10, temperature=0.5)
  assert samples.shape == (2, 10, 88) and set(np.unique(samples)) <= {0.0, 1.0}

  out = run_main(*args, '--mode=sample', '--num_samples=2', '--sample_steps=16')
  assert out.returncode == 0, out.stderr[-3000:]
  ys = np.load(run / 'samples' / 'samples.npz')['y']  # [T, N, 88]
  for n in range(2):  # written with pretty_midi on the run's grid: read back exactly
    np.testing.assert_array_equal(
        midi_folder.read_midi(str(run / 'samples' / f'sample_{n}.mid'), steps_per_quarter=2),
        ys[:, n])


def test_array_folder_score_is_in_the_training_normalisation(tmp_path):
  """Real arrays are scored standardised with the train split's stats: a file scored
  alone gets the row the API gives its raw values."""
  data, run = _mkdir(tmp_path / 'data'), tmp_path / 'run'
  rng = np.random.default_rng(0)
  for i in range(10):
    np.save(data / f'{i}.npy', 100 + 10 * rng.normal(size=(12, 2)))
  args = ('--config=configs/array_folder_f_rnn.py', f'--workdir={run}', *TINY,
          f'--config.data_dir={data}', '--cpu_tuning=off')
  out = run_main(*args)
  assert out.returncode == 0, out.stderr[-3000:]
  recorded = json.load(open(run / 'config.json'))['model']
  assert (recorded['d_data'], recorded['head']) == (2, 'gmm')
  out = run_main(*args, '--mode=score', f'--score_input={data / "3.npy"}')
  assert out.returncode == 0, out.stderr[-3000:]
  (row,) = list(csv.DictReader(open(run / 'scores.csv')))
  assert row['path'] == str(data / '3.npy') and int(row['steps']) == 11
  loaded = reexam_jax.load(str(run))
  ll = loaded.log_prob(np.load(data / '3.npy'))
  np.testing.assert_allclose(ll, [float(row['ll'])], rtol=1e-5)
  # Unstandardised values are far from the model's data: a much lower LL.
  assert loaded.log_prob(np.load(data / '3.npy') * 0 + 1000)[0] < ll[0] - 100
  assert abs(loaded.sample(num=3, steps=40).mean() - 100) < 30  # raw units


@pytest.mark.parametrize('case', ['no_score_input', 'missing_score_input', 'no_data_dir',
                                  'nan_array', 'ragged_array', 'bad_midi_score'])
def test_own_data_bad_input_is_one_line(tmp_path, case):
  data, run = _mkdir(tmp_path / 'data'), tmp_path / 'run'
  config, args = 'configs/array_folder_f_rnn.py', [f'--config.data_dir={data}']
  for i in range(10):  # 8/1/1 by seed
    np.save(data / f'{i}.npy', np.ones((5, 2)) * i)
  if case in ('no_score_input', 'missing_score_input', 'bad_midi_score'):
    _mkdir(run / 'checkpoints')  # the mode's workdir check passes; nothing is read
  if case == 'no_score_input':
    args.append('--mode=score')
    expected = '--score_input is required for --mode=score'
  elif case == 'missing_score_input':
    args += ['--mode=score', f'--score_input={tmp_path / "nope"}']
    expected = f'--score_input={tmp_path / "nope"}: no such file or directory'
  elif case == 'no_data_dir':
    config, args = 'configs/midi_folder_rnn_hier.py', []
    expected = '--config.data_dir is required for midi_folder'
  elif case == 'nan_array':
    x = np.ones((5, 2))
    x[3, 1] = np.nan
    np.save(data / '2.npy', x)
    expected = f'{data / "2.npy"}: NaN or Inf (or a value beyond float32) at step 3, dimension 1'
  elif case == 'ragged_array':
    np.save(data / '4.npy', np.ones((5, 3)))
    expected = f'{data / "4.npy"}: D=3 values per step, but {data / "0.npy"} has D=2'
  else:
    _midi_folder(data)
    (tmp_path / 'bad.mid').write_bytes(b'not midi')
    config = 'configs/midi_folder_f_rnn.py'
    args += ['--mode=score', f'--score_input={tmp_path / "bad.mid"}']
    expected = f'{tmp_path / "bad.mid"}: not a readable MIDI file'
  before = snapshot(tmp_path)
  out = run_main(f'--config={config}', f'--workdir={run}', *args, '--cpu_tuning=off')
  assert out.returncode == 2, out.stderr[-3000:]
  (line,) = out.stderr.splitlines()
  assert line.startswith(f'error: {expected}'), line
  assert snapshot(tmp_path) == before
