"""Checks of a config's fields before a run touches anything: names that exist, values
a run can use. Each failure is one `errors.UserError` line naming the field as the flag
that sets it (`--config.model.d_data=7`). Light: no JAX, so the command line fails in a
fraction of a second."""
import difflib
from typing import Iterable, Iterator

import ml_collections

from reexam_jax import errors

# Fields a run divides by, loops over or counts with: zero or negative is never meant.
POSITIVE = ('batch_size', 'eval_batch_size', 'num_steps', 'tgt_len', 'eval_tgt_len',
            'eval_every', 'checkpoint_every', 'log_every', 'iwae_samples', 'iwae_chunk',
            'learning_rate', 'model.d_data', 'pad_multiple')
# Counts where 0 means "all" (or "none").
NON_NEGATIVE = ('max_eval_batches', 'max_files', 'max_pieces', 'buffer_files',
                'end_learning_rate', 'grad_clip', 'kl_init', 'kl_increment')


def field_names(config: ml_collections.ConfigDict, prefix: str = '') -> Iterator[str]:
  """Dotted names of config's fields, nested ones included ('model', 'model.d_rnn')."""
  for key, value in config.items():
    yield prefix + key
    if isinstance(value, ml_collections.ConfigDict):
      yield from field_names(value, prefix + key + '.')


def unknown_field(name: str, names: Iterable[str], flag: str) -> errors.UserError:
  """The error for `flag`, which sets `name`, none of the config's `names`; it suggests
  the closest one ('batch_sise' -> 'batch_size', 'd_rnn' -> 'model.d_rnn')."""
  close = difflib.get_close_matches(name, list(names), n=1)
  hint = f'; did you mean {close[0]}?' if close else ''
  return errors.UserError(f'{flag}: the config has no field {name!r}{hint}')


def _get(config: ml_collections.ConfigDict, name: str):
  for key in name.split('.'):
    config = config[key]
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserError for the first field whose value no run can use."""
  for name in POSITIVE + NON_NEGATIVE:
    value = _get(config, name)
    if name in POSITIVE and not value > 0:
      raise errors.UserError(f'--config.{name}={value}: must be > 0')
    if name in NON_NEGATIVE and value < 0:
      raise errors.UserError(f'--config.{name}={value}: must be >= 0')
  if not 0 <= config.model.dropout <= 1:
    raise errors.UserError(f'--config.model.dropout={config.model.dropout}: must be in [0, 1]')
  check_optimizer(config)
  check_own_data(config)


def check_own_data(config) -> None:
  """The reading options of own data (experiments.OWN_DATA_FIELDS), where present."""
  if 'kind' in config and config.kind not in ('auto', 'binary', 'real'):
    raise errors.UserError(f'--config.kind={config.kind}: choose one of auto, binary, real')
  if 'fps' in config and config.fps < 0:
    raise errors.UserError(f'--config.fps={config.fps}: must be >= 0 (0: the beat grid)')
  if 'steps_per_quarter' in config and config.steps_per_quarter < 1:
    raise errors.UserError(f'--config.steps_per_quarter={config.steps_per_quarter}: '
                           'must be >= 1')
  if 'valid_frac' in config and not (0 <= config.valid_frac and 0 <= config.test_frac
                                     and config.valid_frac + config.test_frac < 1):
    raise errors.UserError(f'--config.valid_frac={config.valid_frac}, --config.test_frac='
                           f'{config.test_frac}: each must be >= 0 and their sum < 1')


def check_optimizer(config) -> None:
  """Rejects learning rates Adam cannot use. Adam moves every weight by about the
  learning rate per step whatever the gradient's scale, so a rate above 1 (a typo such
  as 1e6) trains to garbage without any number ever becoming non-finite."""
  if not 0 < config.learning_rate <= 1:
    raise errors.UserError(f'--config.learning_rate={config.learning_rate}: Adam needs a '
                           'learning rate in (0, 1]')
  if not 0 <= config.end_learning_rate <= config.learning_rate:
    raise errors.UserError(f'--config.end_learning_rate={config.end_learning_rate}: the '
                           f'cosine decay needs 0 <= end_learning_rate <= learning_rate')
