"""Results table in the shape of the paper's Table 4: models by datasets, our test LL
next to the paper's, with the difference.

  python -m reexam_jax.report RUNS_DIR [--md PATH] [--csv PATH]

collects every results.json under RUNS_DIR (as `--mode=train` writes them), prints the
markdown table and writes it to RUNS_DIR/report.md, and one CSV row per (model, dataset)
cell to RUNS_DIR/report.csv. Runs of the same cell are averaged (the count is shown).
Latent models report the ELBO as test_ll (like the paper) and add the IWAE bound.
"""
import argparse
import csv
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from reexam_jax import experiments

# Table 4's rows and columns, in its order; other models/datasets found follow.
MODEL_LABELS = {
    'f_rnn': 'F-RNN', 'f_srnn': 'F-SRNN', 'delta_rnn_random': 'δ-RNN (random)',
    'delta_rnn_interleave': 'δ-RNN (interleave)', 'rnn_flat': 'RNN-flat',
    'srnn_flat': 'SRNN-flat', 'rnn_hier': 'RNN-hier', 'srnn_hier': 'SRNN-hier',
}
DATASET_LABELS = {
    'timit': 'TIMIT', 'vctk': 'VCTK', 'blizzard': 'Blizzard', 'muse': 'Muse',
    'nottingham': 'Nottingham', 'perm_timit': 'Perm-TIMIT',
}
# Model names that are a paper row under another name (Perm-TIMIT's hier models).
ROW_OF = {name: row for row, (name, _) in experiments.PERM_TIMIT_HIER.items()}
CSV_FIELDS = ('model', 'dataset', 'runs', 'params', 'll_unit', 'test_ll', 'test_elbo',
              'test_iwae', 'iwae_samples', 'paper', 'diff')


def collect(runs_dir: str) -> List[Dict]:
  """Every results.json under runs_dir (sorted by path), each with its 'path'."""
  found = []
  for root, _, files in os.walk(runs_dir):
    if 'results.json' in files:
      path = os.path.join(root, 'results.json')
      with open(path) as f:
        found.append(dict(json.load(f), path=path))
  return sorted(found, key=lambda r: r['path'])


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def cells(results: Sequence[Dict]) -> Dict[Tuple[str, str], Dict]:
  """(row model, dataset) -> averaged results, with the paper's number and the
  difference ours - paper (higher LL is better, so > 0 beats the paper)."""
  groups = {}
  for r in results:
    groups.setdefault((ROW_OF.get(r['model'], r['model']), r['dataset']), []).append(r)
  out = {}
  for (model, dataset), runs in groups.items():
    cell = dict(model=model, dataset=dataset, runs=len(runs), params=runs[0].get('params'),
                ll_unit=runs[0].get('ll_unit'), iwae_samples=runs[0].get('iwae_samples'))
    for key in ('test_ll', 'test_elbo', 'test_iwae'):
      cell[key] = _mean([r.get(key) for r in runs])
    cell['paper'] = experiments.PAPER_TABLE4.get(model, {}).get(dataset)
    both = cell['paper'] is not None and cell['test_ll'] is not None
    cell['diff'] = cell['test_ll'] - cell['paper'] if both else None
    out[(model, dataset)] = cell
  return out


def _order(found, known):
  return [k for k in known if k in found] + sorted(found - set(known))


def _num(v: Optional[float]) -> str:
  if v is None:
    return '—'
  return f'{v:,.0f}' if abs(v) >= 1000 else f'{v:.4g}'


def _cell_text(c: Optional[Dict]) -> str:
  if c is None:
    return ''
  text = _num(c['test_ll'])
  if c['test_iwae'] is not None:
    text += f' (IWAE{c["iwae_samples"] or ""} {_num(c["test_iwae"])})'
  if c['diff'] is not None:
    text += f' / {_num(c["paper"])} ({"+" if c["diff"] >= 0 else ""}{_num(c["diff"])})'
  if c['runs'] > 1:
    text += f' n={c["runs"]}'
  return text


def markdown(table: Dict[Tuple[str, str], Dict]) -> str:
  """Rows models, columns datasets; a cell is 'ours / paper (ours - paper)'."""
  models = _order({m for m, _ in table}, MODEL_LABELS)
  datasets = _order({d for _, d in table}, DATASET_LABELS)
  units = {d: next(c['ll_unit'] for (_, dd), c in table.items() if dd == d) for d in datasets}
  lines = [
      'Test log-likelihood, ours / paper (difference); higher is better. Latent models: '
      'ELBO (the paper\'s number), with the IWAE bound in brackets.', '',
      '| model | ' + ' | '.join(f'{DATASET_LABELS.get(d, d)} ({units[d]})' for d in datasets)
      + ' |',
      '|---' * (len(datasets) + 1) + '|']
  for m in models:
    row = [_cell_text(table.get((m, d))) for d in datasets]
    lines.append(f'| {MODEL_LABELS.get(m, m)} | ' + ' | '.join(row) + ' |')
  return '\n'.join(lines) + '\n'


def write_csv(path: str, table: Dict[Tuple[str, str], Dict]) -> None:
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, CSV_FIELDS)
    writer.writeheader()
    for key in sorted(table):
      writer.writerow({k: ('' if v is None else v) for k, v in table[key].items()
                       if k in CSV_FIELDS})


def main(argv: Optional[Sequence[str]] = None) -> str:
  parser = argparse.ArgumentParser(prog='python -m reexam_jax.report',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('runs_dir', help='directory searched for results.json files')
  parser.add_argument('--md', help='markdown output (default RUNS_DIR/report.md)')
  parser.add_argument('--csv', help='CSV output (default RUNS_DIR/report.csv)')
  args = parser.parse_args(argv)
  results = collect(args.runs_dir)
  if not results:
    parser.error(f'no results.json under {args.runs_dir}')
  table = cells(results)
  text = markdown(table)
  with open(args.md or os.path.join(args.runs_dir, 'report.md'), 'w') as f:
    f.write(text)
  write_csv(args.csv or os.path.join(args.runs_dir, 'report.csv'), table)
  print(text, end='')
  return text


if __name__ == '__main__':
  main(sys.argv[1:])
