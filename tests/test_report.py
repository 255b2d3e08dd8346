"""reexam_jax.report on fake results.json files."""
import csv
import json
import os

import pytest

from reexam_jax import report


def _write(root, name, **results):
  os.makedirs(root / name)
  with open(root / name / 'results.json', 'w') as f:
    json.dump(results, f)


@pytest.fixture
def runs(tmp_path):
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


def test_report_table_and_csv(runs, capsys):
  text = report.main([str(runs)])
  assert capsys.readouterr().out == text
  assert (runs / 'report.md').read_text() == text
  lines = text.splitlines()
  header = next(l for l in lines if l.startswith('| model'))
  # Table 4's column order first, then other datasets.
  assert [c.split(' (')[0] for c in header.strip('|').split(' | ')[1:]] == [
      'TIMIT', 'Muse', 'Perm-TIMIT', 'jsb']
  rows = {l.split(' | ')[0][2:]: l.strip('|').split(' | ')[1:]
          for l in lines if l.startswith('| ') and not l.startswith('| model')}
  assert list(rows) == ['F-RNN', 'RNN-hier', 'SRNN-hier']  # paper row order
  assert rows['F-RNN'][0] == '32,000 / 32,745 (-745)'
  assert rows['F-RNN'][3].strip() == '-8'  # no paper number for JSB
  assert rows['SRNN-hier'][1] == '-5.45 (IWAE64 -5.2) / -5.483 (+0.033) n=2'
  assert rows['RNN-hier'][2] == '95,000 / 95,161 (-161)'  # rnn_hier_made is that row

  with open(runs / 'report.csv') as f:
    table = {(r['model'], r['dataset']): r for r in csv.DictReader(f)}
  assert set(table) == {('f_rnn', 'timit'), ('f_rnn', 'jsb'), ('srnn_hier', 'muse'),
                        ('rnn_hier', 'perm_timit')}
  muse = table[('srnn_hier', 'muse')]
  assert muse['runs'] == '2' and float(muse['test_iwae']) == pytest.approx(-5.2)
  assert float(muse['diff']) == pytest.approx(-5.45 + 5.483)
  assert table[('f_rnn', 'jsb')]['paper'] == ''


def test_report_paths_and_empty_dir(runs, tmp_path_factory):
  out = tmp_path_factory.mktemp('out')
  report.main([str(runs), '--md', str(out / 'a.md'), '--csv', str(out / 'a.csv')])
  assert (out / 'a.md').exists() and (out / 'a.csv').exists()
  assert not (runs / 'report.md').exists()
  with pytest.raises(SystemExit):
    report.main([str(out)])
