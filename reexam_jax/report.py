"""Results table in the shape of the paper's Table 4: models by datasets, our test LL
across seeds next to the paper's.

  python -m reexam_jax.report RUNS_DIR [--md PATH] [--csv PATH]

collects every results.json under RUNS_DIR (as `--mode=train` writes them), groups runs
that differ only in their seed (reexam_jax/runs.py), prints the markdown table and
writes it to RUNS_DIR/report.md, and one CSV row per group to RUNS_DIR/report.csv. A
cell is the mean ± standard deviation across seeds with their count n, the paper's
number, the difference, and (n >= 2) that difference in standard deviations. Latent
models report the ELBO as test_ll (like the paper) and add the IWAE bound.
"""
import argparse
import csv
import os
import statistics
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from reexam_jax import experiments
from reexam_jax import runs as runs_lib

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
# Registry names that a dataset's own command puts in another model's row (Perm-TIMIT's
# masked-MLP hier models are its RNN-hier and SRNN-hier).
ROW_OF = {flags.model['name']: row for data in experiments.DATASETS.values()
          for row, flags in data.model_flags.items() if 'name' in flags.model}
CSV_FIELDS = ('model', 'dataset', 'variant', 'runs', 'seeds', 'grouped_by', 'params',
              'll_unit', 'test_ll', 'test_ll_sd', 'test_elbo', 'test_elbo_sd', 'test_iwae',
              'test_iwae_sd', 'iwae_samples', 'paper', 'diff', 'diff_in_sd')
METRICS = ('test_ll', 'test_elbo', 'test_iwae')


def spread(values: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
  """(mean, sample standard deviation) of the values given; the sd needs two."""
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarise(group: runs_lib.Group) -> Dict:
  """One group of seeds -> its row: means and sds of the test numbers, the paper's
  number, ours - paper (higher LL is better, so > 0 beats the paper) and that difference
  in standard deviations across seeds."""
  dataset, model = group.cell
  results = [r.results for r in group.runs]
  row = dict(model=ROW_OF.get(model, model), dataset=dataset, variant=group.variant,
             runs=len(results), seeds=' '.join(str(s) for s in group.seeds if s is not None),
             grouped_by='config.json' if group.by_config else 'dataset, model',
             params=results[0].get('params'), ll_unit=results[0].get('ll_unit'),
             iwae_samples=results[0].get('iwae_samples'),
             paths=[r.workdir for r in group.runs])
  for key in METRICS:
    row[key], row[f'{key}_sd'] = spread([r.get(key) for r in results])
  row['paper'] = experiments.PAPER_TABLE4.get(row['model'], {}).get(dataset)
  both = row['paper'] is not None and row['test_ll'] is not None
  row['diff'] = row['test_ll'] - row['paper'] if both else None
  sd = row['test_ll_sd']
  row['diff_in_sd'] = row['diff'] / sd if row['diff'] is not None and sd else None
  return row


def table(runs: Sequence[runs_lib.Run]) -> List[Dict]:
  """Finished runs -> one summary per group of seeds."""
  return [summarise(g) for g in runs_lib.group_runs(runs)]


def _order(found, known):
  return [k for k in known if k in found] + sorted(found - set(known))


def _num(v: Optional[float]) -> str:
  if v is None:
    return '—'
  return f'{v:,.0f}' if abs(v) >= 1000 else f'{v:.4g}'


def _spread_text(mean: Optional[float], sd: Optional[float]) -> str:
  return _num(mean) + (f' ± {_num(sd)}' if sd is not None else '')


def _cell_text(c: Optional[Dict]) -> str:
  if c is None:
    return ''
  text = _spread_text(c['test_ll'], c['test_ll_sd'])
  if c['test_iwae'] is not None:
    text += f' (IWAE{c["iwae_samples"] or ""} {_spread_text(c["test_iwae"], c["test_iwae_sd"])})'
  if c['diff'] is not None:
    diff = f'{"+" if c["diff"] >= 0 else ""}{_num(c["diff"])}'
    if c['diff_in_sd'] is not None:
      diff += f', {c["diff_in_sd"]:+.1f} sd'
    text += f' / {_num(c["paper"])} ({diff})'
  if c['runs'] > 1:
    text += f' n={c["runs"]}'
  if c['grouped_by'] != 'config.json':
    text += ' †'
  return text


def _row_label(model: str, variant: str) -> str:
  return MODEL_LABELS.get(model, model) + (f' [{variant}]' if variant else '')


def _notes(rows: Sequence[Dict], runs_dir: str) -> List[str]:
  """Lines under the table: runs grouped without a config.json, repeated seeds."""
  rel = lambda p: os.path.relpath(p, runs_dir)
  old = [rel(p) for r in rows if r['grouped_by'] != 'config.json' for p in r['paths']]
  notes = []
  if old:
    notes.append(f'† no config.json: grouped by (dataset, model) from results.json, each '
                 f'workdir counted as one seed: {", ".join(old)}.')
  for r in rows:
    seeds = r['seeds'].split()
    for seed in sorted(set(seeds), key=seeds.index):
      if seeds.count(seed) > 1:
        notes.append(f'seed {seed} appears {seeds.count(seed)} times in '
                     f'{_row_label(r["model"], r["variant"])} / {r["dataset"]}: reruns of '
                     'one seed are not independent samples.')
  return notes


def markdown(rows: Sequence[Dict], runs_dir: str = '.') -> str:
  """Rows models (and variants), columns datasets; a cell is
  'mean ± sd / paper (mean - paper, in sds) n=N'."""
  cells = {(r['model'], r['variant'], r['dataset']): r for r in rows}
  models = _order({r['model'] for r in rows}, MODEL_LABELS)
  datasets = _order({r['dataset'] for r in rows}, DATASET_LABELS)
  units = {d: next(r['ll_unit'] for r in rows if r['dataset'] == d) for d in datasets}
  lines = [
      'Test log-likelihood, mean ± sd across seeds / paper (ours - paper, and for n >= 2 '
      'that difference in sds); higher is better. Latent models: ELBO (the paper\'s '
      'number), with the IWAE bound in brackets.', '',
      '| model | ' + ' | '.join(f'{DATASET_LABELS.get(d, d)} ({units[d]})' for d in datasets)
      + ' |',
      '|---' * (len(datasets) + 1) + '|']
  for m in models:
    for variant in sorted({r['variant'] for r in rows if r['model'] == m}):
      row = [_cell_text(cells.get((m, variant, d))) for d in datasets]
      lines.append(f'| {_row_label(m, variant)} | ' + ' | '.join(row) + ' |')
  notes = _notes(rows, runs_dir)
  return '\n'.join(lines + ([''] + notes if notes else [])) + '\n'


def write_csv(path: str, rows: Sequence[Dict]) -> None:
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, CSV_FIELDS, extrasaction='ignore')
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r['model'], r['dataset'], r['variant'])):
      writer.writerow({k: ('' if v is None else v) for k, v in row.items()})


def main(argv: Optional[Sequence[str]] = None) -> str:
  parser = argparse.ArgumentParser(prog='python -m reexam_jax.report',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('runs_dir', help='directory searched for results.json files')
  parser.add_argument('--md', help='markdown output (default RUNS_DIR/report.md)')
  parser.add_argument('--csv', help='CSV output (default RUNS_DIR/report.csv)')
  args = parser.parse_args(argv)
  try:
    finished = runs_lib.find_finished(args.runs_dir)
  except ValueError as e:  # an unreadable config.json or results.json, named
    parser.error(str(e))
  if not finished:
    parser.error(f'no results.json under {args.runs_dir}')
  rows = table(finished)
  text = markdown(rows, args.runs_dir)
  with open(args.md or os.path.join(args.runs_dir, 'report.md'), 'w') as f:
    f.write(text)
  write_csv(args.csv or os.path.join(args.runs_dir, 'report.csv'), rows)
  print(text, end='')
  return text


if __name__ == '__main__':
  main(sys.argv[1:])
