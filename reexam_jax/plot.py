"""Training curves of one or many runs, from their workdir/metrics.jsonl.

  python -m reexam_jax.plot WORKDIR... [--out plot.png] [--band sd|minmax|none]

Draws train LL (solid) and valid LL (dashed, dots) against steps; when a run is a
latent model (its log has train_kl), two more panels show the training KL and the KL
weight. One colour per run, labelled by its workdir. Several seeds of one experiment
(grouped as reexam_jax.report groups them) are drawn as one band: their mean and
mean ± sd (or min to max) at the steps every seed has logged.
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from reexam_jax import runs as runs_lib

PANELS = (('train_ll', 'LL (train, valid)'), ('train_kl', 'train KL'),
          ('kl_weight', 'KL weight'))


def load_metrics(workdir: str) -> Dict[str, np.ndarray]:
  """metrics.jsonl -> {key: [N, 2] array of (step, value)} for every logged number
  (a null, a non-finite value, leaves a gap; the "nonfinite" flag list is no curve)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no metrics (is {workdir} a training workdir?)')
  series = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        record = json.loads(line)
        for key, value in record.items():
          if key != 'step' and isinstance(value, (int, float)):
            series.setdefault(key, []).append((record['step'], value))
  return {k: np.asarray(v, np.float64) for k, v in series.items()}


BANDS = ('sd', 'minmax', 'none')


def seed_band(series: Sequence[np.ndarray], band: str
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Seeds' [N_i, 2] (step, value) series -> (steps, mean, low, high) at the steps that
  every seed logged; band 'sd': mean ± sample standard deviation, 'minmax': min to max."""
  steps = series[0][:, 0]
  for s in series[1:]:
    steps = np.intersect1d(steps, s[:, 0])
  values = np.stack([[dict(s.tolist())[step] for step in steps] for s in series])  # [S, N]
  mean = values.mean(0)
  if band == 'sd':
    sd = values.std(0, ddof=1)
    return steps, mean, mean - sd, mean + sd
  if band == 'minmax':
    return steps, mean, values.min(0), values.max(0)
  raise ValueError(f'band must be one of {BANDS[:2]}, got {band!r}')


def _label(group: runs_lib.Group, band: str) -> str:
  """A run's workdir name; for a band, the experiment and its number of seeds."""
  if len(group.runs) == 1:
    return os.path.basename(os.path.normpath(group.runs[0].workdir))
  dataset, model = group.cell
  variant = f' [{group.variant}]' if group.variant else ''
  spread = 'mean ± sd' if band == 'sd' else 'min-max'
  return f'{dataset}_{model}{variant} ({len(group.runs)} seeds, {spread})'


def _draw(ax, metrics: Sequence[Dict[str, np.ndarray]], key: str, band: str, style: dict):
  """One series of one run (a line) or of several seeds (mean line and band)."""
  if not all(key in m for m in metrics):
    return
  if len(metrics) == 1:
    ax.plot(*metrics[0][key].T, **style)
    return
  steps, mean, low, high = seed_band([m[key] for m in metrics], band)
  ax.plot(steps, mean, **style)
  ax.fill_between(steps, low, high, color=style['color'], alpha=0.2, linewidth=0)


def plot_runs(workdirs: Sequence[str], out: str, band: str = 'sd'):
  """Draws the runs' curves to `out` (PNG) and returns the matplotlib Figure. With band
  'none', seeds of one experiment are drawn as separate lines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  if band not in BANDS:
    raise ValueError(f'band must be one of {BANDS}, got {band!r}')
  metrics = {w: load_metrics(w) for w in workdirs}
  runs = [runs_lib.load_run(w) for w in workdirs]
  groups = ([runs_lib.Group([r]) for r in runs] if band == 'none'
            else runs_lib.group_runs(runs))
  panels = [p for p in PANELS if any(p[0] in m for m in metrics.values())] or PANELS[:1]
  fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels) + 0.6),
                           sharex=True, squeeze=False)
  for i, group in enumerate(groups):
    color, label = f'C{i % 10}', _label(group, band)
    group_metrics = [metrics[r.workdir] for r in group.runs]
    for ax, (key, _) in zip(axes[:, 0], panels):
      _draw(ax, group_metrics, key, band,
            dict(color=color, label=f'{label} {key}' if key == 'train_ll' else label))
      if key == 'train_ll':
        _draw(ax, group_metrics, 'valid_ll', band,
              dict(color=color, linestyle='--', marker='o', markersize=3,
                   label=f'{label} valid_ll'))
  for ax, (_, title) in zip(axes[:, 0], panels):
    ax.set_ylabel(title)
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize='small')
  axes[-1, 0].set_xlabel('step')
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return fig


def main(argv: Optional[List[str]] = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m reexam_jax.plot',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('workdirs', nargs='+', help='training workdirs (with metrics.jsonl)')
  parser.add_argument('--out', default='plot.png', help='PNG to write')
  parser.add_argument('--band', choices=BANDS, default='sd',
                      help='seeds of one experiment: mean ± sd (sd), min to max (minmax) '
                           'or one line each (none)')
  args = parser.parse_args(argv)
  plot_runs(args.workdirs, args.out, args.band)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main(sys.argv[1:])
