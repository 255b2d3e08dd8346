"""Command line: python -m reexam_jax.main --config=configs/<dataset>_<model>.py
--workdir=DIR [--mode=train|eval|params|sample].

  train   trains (resuming from DIR if it holds a checkpoint) and writes results.json
  eval    scores DIR's best checkpoint on the test set (ELBO, IWAE, prior estimate)
  params  prints the parameter count (`params: N` last), reading no data
  sample  draws --num_samples sequences from DIR's best checkpoint into DIR/samples
          (wav for speech, MIDI + piano-roll PNG for music; see reexam_jax/sample.py)
"""
import sys

from absl import app
from absl import logging
from absl import flags
from ml_collections import config_flags

from reexam_jax import errors

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'params', 'sample'],
                          'What to do.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 4, '--mode=sample: sequences to draw.')
_SAMPLE_STEPS = flags.DEFINE_integer(
    'sample_steps', 0, '--mode=sample: model steps per sequence (0: 4 * config.tgt_len).')
_TEMPERATURE = flags.DEFINE_float(
    'temperature', 1.0, '--mode=sample: samples p^(1/T) per conditional (logits / T, '
    'Gaussian stds * sqrt(T)); 1 is the model.')


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
  """Runs the mode; a run that ends in one of errors.py's exceptions prints its message
  as one line on stderr and exits with that exception's code."""
  try:
    run(argv)
  except (errors.UserError, errors.TrainingDiverged, errors.TrainingInterrupted) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)


def run(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every save and read at INFO
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  if _MODE.value == 'params':
    print_params(config)
    return
  if not _WORKDIR.value:
    raise app.UsageError('--workdir is required for --mode=train, eval and sample')
  if _MODE.value == 'sample':
    from reexam_jax import sample  # pylint: disable=g-import-not-at-top
    out = sample.sample_workdir(config, _WORKDIR.value, num_samples=_NUM_SAMPLES.value,
                                num_steps=_SAMPLE_STEPS.value,
                                temperature=_TEMPERATURE.value, seed=config.seed)
    print(f'wrote {len(out["files"])} files to {out["sample_dir"]}')
    print(f'sampling: {out["steps_per_s"]:.1f} steps/s ({_NUM_SAMPLES.value} sequences in '
          f'parallel; compile {out["compile_s"]:.1f} s)')
    return
  from reexam_jax import parallel  # pylint: disable=g-import-not-at-top
  from reexam_jax import runtime  # pylint: disable=g-import-not-at-top
  from reexam_jax import train  # pylint: disable=g-import-not-at-top
  runtime.setup()  # before the first large allocation
  parallel.initialize()
  if _MODE.value == 'train':
    results = train.train_and_evaluate(config, _WORKDIR.value)
  else:
    results = train.evaluate_checkpoint(config, _WORKDIR.value)
  for key in ('valid_ll', 'test_ll', 'test_elbo', 'test_iwae', 'test_prior_estimate'):
    if key in results:
      print(f'{key}: {results[key]:.4f} {results["ll_unit"]}')


if __name__ == '__main__':
  from reexam_jax import runtime  # pylint: disable=g-import-not-at-top
  runtime.reexec_with_hugepages()  # before JAX allocates anything
  flags.mark_flag_as_required('config')
  app.run(main)
