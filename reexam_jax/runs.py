"""Training runs on disk, grouped into experiments whose members differ only in seed.

A run is a workdir. Its config.json (the whole config, written when training starts)
says what was trained; runs whose configs differ only in `seed`, or in fields that
cannot change a number (SEED_LIKE), are seeds of one experiment. Workdirs without a
config.json (written before it existed) are grouped by (dataset, model) from their
results.json instead, each counted as one seed. `reexam_jax.report` and
`reexam_jax.plot` both group runs this way.
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from reexam_jax import fileio

# Config fields that do not define the experiment: the seed, fields that only change
# logging, checkpoint cadence and the progress bar, and where the same data are read.
SEED_LIKE = ('seed', 'progress_bar', 'log_every', 'checkpoint_every', 'data_dir',
             'prepared_dir')
NO_CONFIG = 'no config.json'


@dataclasses.dataclass
class Run:
  workdir: str
  config: Optional[Dict[str, Any]]   # config.json; None in older workdirs
  results: Optional[Dict[str, Any]]  # results.json; None until training has finished

  @property
  def seed(self) -> Optional[int]:
    return None if self.config is None else self.config.get('seed')

  @property
  def cell(self) -> Tuple[Optional[str], Optional[str]]:
    """(dataset, model name), from config.json, else results.json, else (None, None)."""
    if self.config is not None:
      return self.config.get('dataset'), self.config.get('model', {}).get('name')
    if self.results is not None:
      return self.results.get('dataset'), self.results.get('model')
    return None, None


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from None


def load_run(workdir: str) -> Run:
  return Run(workdir, _read_json(os.path.join(workdir, 'config.json')),
             _read_json(os.path.join(workdir, 'results.json')))


def find_finished(runs_dir: str) -> List[Run]:
  """Every workdir under runs_dir that holds a results.json, sorted by path."""
  found = [root for root, _, files in os.walk(runs_dir) if 'results.json' in files]
  return [load_run(w) for w in sorted(found)]


def _defining_fields(run: Run) -> Dict[str, str]:
  """The config fields that define run's experiment, values as JSON text."""
  return {k: json.dumps(v, sort_keys=True) for k, v in fileio.flatten(run.config).items()
          if k not in SEED_LIKE}


def experiment_key(run: Run) -> Tuple:
  """Equal for the seeds of one experiment (see the module docstring)."""
  if run.config is not None:
    return ('config',) + tuple(sorted(_defining_fields(run).items()))
  if run.results is not None:
    return ('cell',) + run.cell
  return ('workdir', run.workdir)  # nothing to group by: a run of its own


@dataclasses.dataclass
class Group:
  """The seeds of one experiment. `variant` tells it apart from other experiments of
  the same (dataset, model): the config fields in which they differ, or NO_CONFIG."""
  runs: List[Run]
  variant: str = ''

  @property
  def cell(self) -> Tuple[Optional[str], Optional[str]]:
    return self.runs[0].cell

  @property
  def by_config(self) -> bool:
    return self.runs[0].config is not None

  @property
  def seeds(self) -> List[Optional[int]]:
    return [r.seed for r in self.runs]


def _variants(groups: Sequence[Group]) -> List[str]:
  """Labels telling apart the groups of one (dataset, model): 'num_steps=5000, ...'."""
  fields = [_defining_fields(g.runs[0]) if g.by_config else None for g in groups]
  configs = [f for f in fields if f is not None]
  keys = sorted({k for f in configs for k in f})
  differing = [k for k in keys if len({f.get(k) for f in configs}) > 1]
  labels = []
  for group, f in zip(groups, fields):
    if f is None:
      labels.append(NO_CONFIG if group.runs[0].results is not None
                    else os.path.basename(os.path.normpath(group.runs[0].workdir)))
    else:
      labels.append(', '.join(f'{k}={f[k]}' if k in f else f'{k} unset' for k in differing))
  return labels


def group_runs(runs: Sequence[Run]) -> List[Group]:
  """Runs -> groups of seeds, in order of first appearance, each labelled with its
  variant when its (dataset, model) has several groups."""
  by_key = {}
  for run in runs:
    by_key.setdefault(experiment_key(run), []).append(run)
  groups = [Group(members) for members in by_key.values()]
  by_cell = {}
  for group in groups:
    by_cell.setdefault(group.cell, []).append(group)
  for same_cell in by_cell.values():
    if len(same_cell) > 1:
      for group, label in zip(same_cell, _variants(same_cell)):
        group.variant = label
  return groups
