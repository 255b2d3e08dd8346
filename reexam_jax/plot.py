"""Training curves of one or many runs, from their workdir/metrics.jsonl.

  python -m reexam_jax.plot WORKDIR... [--out plot.png]

Draws train LL (solid) and valid LL (dashed, dots) against steps; when a run is a
latent model (its log has train_kl), two more panels show the training KL and the KL
weight. One colour per run, labelled by its workdir.
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

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


def plot_runs(workdirs: Sequence[str], out: str, labels: Optional[Sequence[str]] = None):
  """Draws the runs' curves to `out` (PNG) and returns the matplotlib Figure."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = [load_metrics(w) for w in workdirs]
  labels = labels or [os.path.basename(os.path.normpath(w)) for w in workdirs]
  panels = [p for p in PANELS if any(p[0] in r for r in runs)] or PANELS[:1]
  fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels) + 0.6),
                           sharex=True, squeeze=False)
  for i, (run, label) in enumerate(zip(runs, labels)):
    color = f'C{i % 10}'
    for ax, (key, _) in zip(axes[:, 0], panels):
      if key in run:
        ax.plot(*run[key].T, color=color, label=f'{label} {key}' if key == 'train_ll'
                else label)
      if key == 'train_ll' and 'valid_ll' in run:
        ax.plot(*run['valid_ll'].T, '--o', color=color, markersize=3,
                label=f'{label} valid_ll')
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
  args = parser.parse_args(argv)
  plot_runs(args.workdirs, args.out)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main(sys.argv[1:])
