"""reexam_jax.report (and the grouping of reexam_jax.runs) on fake workdirs."""
import csv
import json
import os

import pytest

from reexam_jax import experiments
from reexam_jax import report
from reexam_jax import runs


def _write(root, name, config=None, **results):
  """A fake finished workdir: results.json, and config.json when `config` is given
  (config.to_dict() of a real config, as training writes it)."""
  os.makedirs(root / name)
  with open(root / name / 'results.json', 'w') as f:
    json.dump(results, f)
  if config is not None:
    with open(root / name / 'config.json', 'w') as f:
      json.dump(config.to_dict(), f, indent=2, sort_keys=True)


def _config(dataset, model, **fields):
  config = experiments.get_config(dataset, model)
  config.unlock()
  config.update(fields)
  return config


def _rows(text):
  """Markdown table -> {row label: [cells]}."""
  lines = text.splitlines()
  cells = [l[2:-2].split(' | ') for l in lines
           if l.startswith('| ') and not l.startswith('| model')]
  return {c[0]: c[1:] for c in cells}


@pytest.fixture
def runs_dir(tmp_path):
  """Workdirs without config.json (older runs): grouped by (dataset, model)."""
  _write(tmp_path, 'timit_f_rnn', dataset='timit', model='f_rnn', params=1000,
         test_ll=32000.0, ll_unit='nats/sequence')
  _write(tmp_path, 'muse/srnn_hier/seed1', dataset='muse', model='srnn_hier', params=20,
         test_ll=-5.5, test_elbo=-5.5, test_iwae=-5.3, iwae_samples=64,
         ll_unit='nats/88-note step')
  _write(tmp_path, 'muse/srnn_hier/seed2', dataset='muse', model='srnn_hier', params=20,
         test_ll=-5.4, test_elbo=-5.4, test_iwae=-5.1, iwae_samples=64,
         ll_unit='nats/88-note step')
  _write(tmp_path, 'perm', dataset='perm_timit', model='rnn_hier_made', params=7,
         test_ll=95000.0, ll_unit='nats/sequence')
  _write(tmp_path, 'jsb', dataset='jsb', model='f_rnn', params=9, test_ll=-8.0,
         ll_unit='nats/88-note step')
  (tmp_path / 'notes.json').write_text('{}')  # not a results file
  return tmp_path


def test_report_table_and_csv(runs_dir, capsys):
  text = report.main([str(runs_dir)])
  assert capsys.readouterr().out == text
  assert (runs_dir / 'report.md').read_text() == text
  header = next(l for l in text.splitlines() if l.startswith('| model'))
  # Table 4's column order first, then other datasets.
  assert [c.split(' (')[0] for c in header.strip('|').split(' | ')[1:]] == [
      'TIMIT', 'Muse', 'Perm-TIMIT', 'jsb']
  rows = _rows(text)
  assert list(rows) == ['F-RNN', 'RNN-hier', 'SRNN-hier']  # paper row order
  assert rows['F-RNN'][0] == '32,000 / 32,745 (-745) †'
  assert rows['F-RNN'][3] == '-8 †'  # no paper number for JSB
  # Two workdirs of one cell without config.json: two seeds, mean ± sd, and the
  # difference from the paper in sds: (-5.45 + 5.483) / 0.0707 = +0.5.
  assert rows['SRNN-hier'][1] == ('-5.45 ± 0.07071 (IWAE64 -5.2 ± 0.1414) / -5.483 '
                                  '(+0.033, +0.5 sd) n=2 †')
  assert rows['RNN-hier'][2] == '95,000 / 95,161 (-161) †'  # rnn_hier_made is that row
  assert ('† no config.json: grouped by (dataset, model) from results.json, each workdir '
          'counted as one seed: jsb, muse/srnn_hier/seed1, muse/srnn_hier/seed2, perm, '
          'timit_f_rnn.') in text.splitlines()

  with open(runs_dir / 'report.csv') as f:
    table = {(r['model'], r['dataset']): r for r in csv.DictReader(f)}
  assert set(table) == {('f_rnn', 'timit'), ('f_rnn', 'jsb'), ('srnn_hier', 'muse'),
                        ('rnn_hier', 'perm_timit')}
  muse = table[('srnn_hier', 'muse')]
  assert muse['runs'] == '2' and muse['grouped_by'] == 'dataset, model'
  assert float(muse['test_iwae']) == pytest.approx(-5.2)
  assert float(muse['test_iwae_sd']) == pytest.approx(0.1414, abs=1e-4)
  assert float(muse['diff']) == pytest.approx(-5.45 + 5.483)
  assert float(muse['diff_in_sd']) == pytest.approx(0.033 / 0.070711, rel=1e-4)
  assert table[('f_rnn', 'jsb')]['paper'] == '' and table[('f_rnn', 'jsb')]['test_ll_sd'] == ''


def test_seeds_grouped_by_config(tmp_path):
  """Runs whose config.json differ only in seed (and the progress bar) are one group;
  another num_steps is another group, labelled by that field; a workdir without
  config.json of the same cell stays apart."""
  for seed, ll in ((0, -3.45), (1, -3.47), (2, -3.49)):
    _write(tmp_path, f'long/seed{seed}',
           _config('nottingham', 'f_rnn', seed=seed, progress_bar=seed == 0),
           dataset='nottingham', model='f_rnn', test_ll=ll, ll_unit='nats/88-note step')
  for seed, ll in ((0, -4.0), (1, -4.2)):
    _write(tmp_path, f'short/seed{seed}', _config('nottingham', 'f_rnn', seed=seed,
                                                  num_steps=500),
           dataset='nottingham', model='f_rnn', test_ll=ll, ll_unit='nats/88-note step')
  _write(tmp_path, 'old', dataset='nottingham', model='f_rnn', test_ll=-3.3,
         ll_unit='nats/88-note step')

  rows = _rows(report.main([str(tmp_path)]))
  assert rows == {
      'F-RNN [no config.json]': ['-3.3 / -3.4 (+0.1) †'],
      'F-RNN [num_steps=20000]': ['-3.47 ± 0.02 / -3.4 (-0.07, -3.5 sd) n=3'],
      'F-RNN [num_steps=500]': ['-4.1 ± 0.1414 / -3.4 (-0.7, -4.9 sd) n=2'],
  }
  with open(tmp_path / 'report.csv') as f:
    seeds = {r['variant']: (r['seeds'], r['grouped_by']) for r in csv.DictReader(f)}
  assert seeds == {'num_steps=20000': ('0 1 2', 'config.json'),
                   'num_steps=500': ('0 1', 'config.json'),
                   runs.NO_CONFIG: ('', 'dataset, model')}


def test_repeated_seed_is_noted(tmp_path):
  for name in ('a', 'b'):
    _write(tmp_path, name, _config('muse', 'f_srnn', seed=3), dataset='muse',
           model='f_srnn', test_ll=-7.0, test_elbo=-7.0, test_iwae=-6.9, iwae_samples=64,
           ll_unit='nats/88-note step')
  text = report.main([str(tmp_path)])
  assert _rows(text)['F-SRNN'] == ['-7 ± 0 (IWAE64 -6.9 ± 0) / -6.438 (-0.562) n=2']
  assert text.splitlines()[-1] == ('seed 3 appears 2 times in F-SRNN / muse: reruns of one '
                                   'seed are not independent samples.')


def test_report_paths_and_empty_dir(runs_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp('out')
  report.main([str(runs_dir), '--md', str(out / 'a.md'), '--csv', str(out / 'a.csv')])
  assert (out / 'a.md').exists() and (out / 'a.csv').exists()
  assert not (runs_dir / 'report.md').exists()
  with pytest.raises(SystemExit):
    report.main([str(out)])


def test_unreadable_results_are_named(tmp_path, capsys):
  os.makedirs(tmp_path / 'run')
  (tmp_path / 'run' / 'results.json').write_text('{"test_ll": ')
  with pytest.raises(SystemExit) as exit_info:
    report.main([str(tmp_path)])
  assert exit_info.value.code == 2
  error = capsys.readouterr().err.splitlines()[-1]
  assert error.startswith(f'python -m reexam_jax.report: error: {tmp_path}/run/results.json: '
                          'not valid JSON')
