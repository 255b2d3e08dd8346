"""A run's workdir and the config it was made with.

Training writes `WORKDIR/config.json` (`json.dumps(config.to_dict(), indent=2,
sort_keys=True)`) before its first checkpoint. Every later train, eval or sample on
that workdir compares its own config with it and stops, before touching anything, when
they differ: resuming quickstart checkpoints under the Nottingham config would train
nothing and report the wrong numbers. Only the fields of SAFE_TO_CHANGE, which change
neither the training trajectory nor what the results mean, may differ, and the command
line asks for them by name (`--allow_config_change=log_every`).

A workdir with checkpoints but no config.json comes from a version that did not record
its config: it is not checked, and training records its current config there (with a
warning), so from then on it is.

Light (no JAX): the command line checks before importing the model code.
"""
import json
import os
from typing import Any, Dict, Iterable, List, Tuple

from absl import logging
import ml_collections

from reexam_jax import errors
from reexam_jax import fileio

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'

# Fields that may differ from the workdir's config.json, and why that is safe. Not
# here, among others: num_steps (the cosine schedule's horizon: every learning rate
# after a resume would differ from an uninterrupted run's), eval_every (which steps can
# become the best checkpoint), max_eval_batches (which sequences valid and test LL
# average over), seed, and every model and optimiser field.
SAFE_TO_CHANGE = {
    'log_every': 'how often training metrics are logged',
    'progress_bar': 'the terminal display',
    'checkpoint_every': 'when the state is saved; a resumed run continues exactly',
    'eval_batch_size': 'how evaluation batches sequences; the same estimates',
    'iwae_chunk': 'how many importance samples are scored at once; the same bound',
    'iwae_samples': "the test bound's sample count, recorded beside it in the results",
    'data_dir': 'where the same data are read from (the data moved)',
    'prepared_dir': 'where the same prepared speech data are kept (they moved)',
}


def config_dict(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """config as config.json holds it (JSON types: tuples become lists)."""
  return json.loads(json.dumps(config.to_dict()))


_ABSENT = object()


def differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
  """(dotted field, old value, new value) for each field that differs, sorted by name;
  a field only one side has is compared with _ABSENT."""
  old, new = fileio.flatten(old), fileio.flatten(new)
  return [(name, old.get(name, _ABSENT), new.get(name, _ABSENT))
          for name in sorted(old.keys() | new.keys())
          if old.get(name, _ABSENT) != new.get(name, _ABSENT)]


def _show(value: Any) -> str:
  return '(absent)' if value is _ABSENT else json.dumps(value)


def check_allowed(names: Iterable[str]) -> Tuple[str, ...]:
  """The --allow_config_change field names, each one of SAFE_TO_CHANGE."""
  names = tuple(names)
  unsafe = [n for n in names if n not in SAFE_TO_CHANGE]
  if unsafe:
    raise errors.UserError(
        f'--allow_config_change: {",".join(unsafe)} may not change in a workdir (only '
        f'{",".join(SAFE_TO_CHANGE)}); use a new --workdir')
  return names


def check_config(config: ml_collections.ConfigDict, workdir: str,
                 allowed: Iterable[str] = tuple(SAFE_TO_CHANGE)) -> None:
  """Raises UserError when workdir's config.json differs from config in a field not
  in `allowed`; the message lists every differing field, old -> new."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      recorded = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.UserError(f'{path}: unreadable ({e}); use a new --workdir') from e
  diffs = differences(recorded, config_dict(config))
  refused = [name for name, _, _ in diffs if name not in allowed]
  if not refused:
    return
  listed = ', '.join(f'{name} {_show(old)} -> {_show(new)}' for name, old, new in diffs)
  unsafe = [name for name in refused if name not in SAFE_TO_CHANGE]
  advice = (f'{", ".join(unsafe)} may not change in a workdir: use a new --workdir'
            if unsafe else
            f'if that is meant, pass --allow_config_change={",".join(refused)}')
  raise errors.UserError(f'--workdir={workdir} holds a run of another config '
                         f'({CONFIG_FILE}): {listed}; {advice}')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config workdir/config.json records (locked), for callers without a config
  file (the Python API); UserError when there is none."""
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise errors.UserError(f'{path}: no readable run config ({e}); train first') from e
  config.lock()
  return config


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Records config in workdir/config.json (atomically), unless it holds exactly this config already."""
  path = os.path.join(workdir, CONFIG_FILE)
  text = json.dumps(config.to_dict(), indent=2, sort_keys=True)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == text:
        return
  elif os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    logging.warning('%s has checkpoints but no %s (an older version made it): recording '
                    'this config as the one they were trained with', workdir, CONFIG_FILE)
  fileio.write_text(path, text)


def check_writable(workdir: str) -> None:
  """Raises UserError unless training can write workdir: it is a writable directory,
  or it is missing and its nearest existing parent is writable (it will be made)."""
  path = os.path.abspath(workdir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    raise errors.UserError(f'--workdir={workdir}: {path} is not a directory')
  if not os.access(path, os.W_OK):
    raise errors.UserError(f'--workdir={workdir}: {path} is not writable')


def check_has_checkpoints(workdir: str) -> None:
  """Raises UserError unless workdir holds checkpoints (for eval and sample)."""
  if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    raise errors.UserError(f'--workdir={workdir}: no checkpoints there (train first)')
