"""Command line: python -m reexam_jax.main --config=configs/<dataset>_<model>.py
--workdir=DIR [--mode=train|eval|params].

  train   trains (resuming from DIR if it holds a checkpoint) and writes results.json
  eval    scores DIR's best checkpoint on the test set (ELBO, IWAE, prior estimate)
  params  prints the parameter count (`params: N` last), reading no data
"""
from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'params'], 'What to do.')


def print_params(config) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from reexam_jax import models  # pylint: disable=g-import-not-at-top
  model = models.build_model(config.model)
  shapes = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0),
                                                      config.model.d_data))
  count = models.count_params(model, shapes)
  reference = models.reference_param_count(model, shapes)
  print(f'model: {config.model.name} on {config.dataset}')
  if reference != count:
    print(f'reference_formula_params: {reference}  (the reference log\'s count, spec §9.1)')
  print(f'params: {count}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  if _MODE.value == 'params':
    print_params(config)
    return
  if not _WORKDIR.value:
    raise app.UsageError('--workdir is required for --mode=train and --mode=eval')
  from reexam_jax import parallel  # pylint: disable=g-import-not-at-top
  from reexam_jax import train  # pylint: disable=g-import-not-at-top
  parallel.initialize()
  if _MODE.value == 'train':
    results = train.train_and_evaluate(config, _WORKDIR.value)
  else:
    results = train.evaluate_checkpoint(config, _WORKDIR.value)
  for key in ('valid_ll', 'test_ll', 'test_elbo', 'test_iwae', 'test_prior_estimate'):
    if key in results:
      print(f'{key}: {results[key]:.4f} {results["ll_unit"]}')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main)
