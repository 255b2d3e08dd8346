"""reexam_jax.plot on fake metrics.jsonl files."""
import json

import numpy as np
import pytest

from reexam_jax import experiments
from reexam_jax import plot


def _log(workdir, lines):
  workdir.mkdir()
  with open(workdir / 'metrics.jsonl', 'w') as f:
    f.writelines(json.dumps(l) + '\n' for l in lines)
  return str(workdir)


@pytest.fixture
def runs(tmp_path):
  rnn = _log(tmp_path / 'rnn', [
      dict(step=100, train_ll=-3.0, train_loss=3.0, learning_rate=1e-3),
      dict(step=200, train_ll=-2.0, train_loss=2.0, learning_rate=9e-4),
      dict(step=200, valid_ll=-2.5)])
  srnn = _log(tmp_path / 'srnn', [
      dict(step=100, train_ll=-4.0, train_loss=4.2, learning_rate=1e-3, train_kl=1.0,
           kl_weight=0.2),
      dict(step=200, train_ll=-3.5, train_loss=3.8, learning_rate=9e-4, train_kl=0.8,
           kl_weight=0.21),
      dict(step=200, valid_ll=-3.9),
      dict(step=300, valid_ll=None, nonfinite=['valid_ll'])])
  return rnn, srnn


def test_load_metrics(runs):
  m = plot.load_metrics(runs[1])
  np.testing.assert_array_equal(m['train_ll'], [[100, -4.0], [200, -3.5]])
  np.testing.assert_array_equal(m['valid_ll'], [[200, -3.9]])
  assert set(m) == {'train_ll', 'train_loss', 'learning_rate', 'train_kl', 'kl_weight',
                    'valid_ll'}


def test_plot_runs_draws_every_series(runs, tmp_path):
  out = tmp_path / 'p.png'
  fig = plot.plot_runs(runs, str(out))
  assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  ll, kl, weight = fig.axes  # latent run present: LL, KL and KL-weight panels
  lines = {l.get_label(): l.get_xydata().tolist() for l in ll.lines}
  assert lines == {'rnn train_ll': [[100, -3], [200, -2]], 'rnn valid_ll': [[200, -2.5]],
                   'srnn train_ll': [[100, -4], [200, -3.5]],
                   'srnn valid_ll': [[200, -3.9]]}
  assert [l.get_label() for l in kl.lines] == ['srnn']
  np.testing.assert_allclose(weight.lines[0].get_xydata(), [[100, 0.2], [200, 0.21]])


def test_cli_single_deterministic_run(runs, tmp_path, capsys):
  out = tmp_path / 'one.png'
  plot.main([runs[0], '--out', str(out)])
  assert out.exists() and 'wrote' in capsys.readouterr().out
  assert len(plot.plot_runs(runs[:1], str(out)).axes) == 1  # no latent panels
  with pytest.raises(FileNotFoundError, match='metrics.jsonl'):
    plot.main([str(tmp_path), '--out', str(out)])


def _seeds(tmp_path, lls):
  """One workdir per seed of one experiment: config.json equal but for the seed."""
  workdirs = []
  for seed, (ll_100, ll_200) in enumerate(lls):
    workdir = _log(tmp_path / f'seed{seed}', [
        dict(step=100, train_ll=ll_100), dict(step=200, train_ll=ll_200),
        dict(step=200, valid_ll=ll_200 - 1)])
    config = experiments.get_config('nottingham', 'f_rnn', f'seed={seed}')
    (tmp_path / f'seed{seed}' / 'config.json').write_text(json.dumps(config.to_dict()))
    workdirs.append(workdir)
  return workdirs


def test_seed_band():
  a = np.array([[100, 1.0], [200, 2.0], [300, 3.0]])
  b = np.array([[100, 3.0], [200, 6.0]])  # still training: no step 300 yet
  steps, mean, low, high = plot.seed_band([a, b], 'sd')
  np.testing.assert_array_equal(steps, [100, 200])
  np.testing.assert_allclose(mean, [2.0, 4.0])
  np.testing.assert_allclose(high - mean, [2 ** 0.5, 8 ** 0.5])  # sample sd
  np.testing.assert_allclose(mean - low, high - mean)
  _, _, low, high = plot.seed_band([a, b], 'minmax')
  np.testing.assert_allclose([low, high], [[1.0, 2.0], [3.0, 6.0]])


def test_seeds_of_one_experiment_are_one_band(runs, tmp_path):
  seeds = _seeds(tmp_path, [(-3.0, -2.0), (-3.2, -2.4), (-3.4, -2.6)])
  fig = plot.plot_runs(seeds + [runs[0]], str(tmp_path / 'band.png'))
  ll = fig.axes[0]
  lines = {l.get_label(): l.get_xydata().tolist() for l in ll.lines}
  band = 'nottingham_f_rnn (3 seeds, mean ± sd)'
  want = {f'{band} train_ll': [[100, -3.2], [200, -7 / 3]],  # means over the seeds
          f'{band} valid_ll': [[200, -10 / 3]],
          'rnn train_ll': [[100, -3], [200, -2]], 'rnn valid_ll': [[200, -2.5]]}
  assert set(lines) == set(want)
  for label, xy in want.items():
    np.testing.assert_allclose(lines[label], xy, err_msg=label)
  train_band = ll.collections[0].get_paths()[0].vertices[:, 1]
  # Lowest: step 100, mean -3.2 less sd 0.2; highest: step 200, mean plus its sd.
  np.testing.assert_allclose([train_band.min(), train_band.max()],
                             [-3.4, -7 / 3 + np.std([-2.0, -2.4, -2.6], ddof=1)])
  assert len(ll.collections) == 2  # train and valid bands; the single run has none

  fig = plot.plot_runs(seeds, str(tmp_path / 'lines.png'), band='none')
  assert sorted(l.get_label() for l in fig.axes[0].lines) == [
      f'seed{i} {k}' for i in range(3) for k in ('train_ll', 'valid_ll')]


def test_cli_band_choice(tmp_path, capsys):
  seeds = _seeds(tmp_path, [(-3.0, -2.0), (-3.2, -2.4)])
  out = tmp_path / 'minmax.png'
  plot.main(seeds + ['--out', str(out), '--band', 'minmax'])
  assert out.exists()
  with pytest.raises(SystemExit):
    plot.main(seeds + ['--band', 'quantiles'])
  assert "invalid choice: 'quantiles'" in capsys.readouterr().err
