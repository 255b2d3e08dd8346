"""reexam_jax.plot on fake metrics.jsonl files."""
import json

import numpy as np
import pytest

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
