"""Command line: python -m reexam_jax.main --config=configs/<dataset>_<model>.py
--workdir=DIR [--mode=train|eval|params|sample|score].

  train   trains (resuming from DIR if it holds a checkpoint) and writes results.json
  eval    scores DIR's best checkpoint on the test set (ELBO, IWAE, prior estimate)
  params  prints the parameter count (`params: N` last), reading no data
  sample  draws --num_samples sequences from DIR's best checkpoint into DIR/samples
          (wav for speech, MIDI + piano-roll PNG for music, a drawing PNG for
          handwriting; see reexam_jax/sample.py)
  score   scores each sequence of --score_input (a file or directory of the run's own
          dataset) with DIR's best checkpoint into DIR/scores.csv (reexam_jax/score.py)
  draw_data  handwriting: draws --num_samples validation sequences of the data as
          sample does, into DIR/data (no checkpoint needed)

array_folder runs fit the model to the data first (config.fit_model_to_data: d_data,
head), so every mode but params reads the data before anything else.

Bad input (a flag, config field, config file, workdir or data file that cannot be used)
ends the command with one line `error: ...` on stderr and exit code 2, before anything
is written.

--cpu_tuning=auto (the default) tunes glibc's malloc for XLA:CPU in train, eval and
sample modes when JAX will run on the CPU, restarting the process once for huge pages
(see reexam_jax/runtime.py); one line `cpu tuning: ...` on stdout says what was applied.
--cpu_tuning=off leaves the process as it is.

Multi-process (train and eval): start the same command once per process with
--coordinator_address=HOST:PORT --num_processes=N --process_id=I (process 0 listens on
HOST:PORT); without them, cluster launchers (SLURM, Cloud TPU pods,
JAX_COORDINATOR_ADDRESS) are detected. Results equal the single-process run; only
process 0 writes metrics and results (launch/README.md).
"""
import errno
import os
import re
import sys
from typing import Optional

from absl import app
from absl import logging
from absl import flags
from ml_collections import config_flags

from reexam_jax import config_checks
from reexam_jax import errors
from reexam_jax import runtime
from reexam_jax import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'params', 'sample',
                                           'score', 'draw_data'], 'What to do.')
_SCORE_INPUT = flags.DEFINE_string(
    'score_input', None, '--mode=score: a file or directory of sequences in the format '
    'of the run\'s dataset.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_list(
    'allow_config_change', [], 'Config fields that may differ from the workdir\'s '
    f'config.json, among {",".join(workdir_lib.SAFE_TO_CHANGE)} (see README).')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 4, '--mode=sample: sequences to draw.',
                                    lower_bound=1)
_SAMPLE_STEPS = flags.DEFINE_integer(
    'sample_steps', 0, '--mode=sample: model steps per sequence (0: 4 * config.tgt_len).',
    lower_bound=0)
_TEMPERATURE = flags.DEFINE_float(
    'temperature', 1.0, '--mode=sample: samples p^(1/T) per conditional (logits / T, '
    'Gaussian stds * sqrt(T)); 1 is the model.')
flags.register_validator('temperature', lambda t: t > 0, 'must be > 0')
_CPU_TUNING = flags.DEFINE_enum(
    'cpu_tuning', 'auto', ['auto', 'off'],
    'auto: in train, eval and sample modes on the CPU backend, raise glibc\'s malloc '
    'thresholds and restart once with huge pages for large buffers (README, "CPU '
    'tuning"); off: neither.')

# jax.distributed.initialize's arguments (reexam_jax/parallel.py).
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None, 'Multi-process run: HOST:PORT of process 0 (with '
    '--num_processes and --process_id; default: detect a cluster launcher).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Multi-process run: number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'Multi-process run: this process, 0 .. N-1.')


def _exit_with(message: str) -> None:
  """Ends the command as every bad input does: one line on stderr, exit code 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(errors.UserError.exit_code)


def _config_argument(argv) -> Optional[str]:
  """The value of --config in argv (`--config=X` or `--config X`; the last one, as
  absl takes it), None when absent."""
  argument = None
  for i, arg in enumerate(argv):
    name, equals, value = arg.partition('=')
    if name in ('--config', '-config'):
      argument = value if equals else (argv[i + 1] if i + 1 < len(argv) else '')
  return argument


def check_config_argv(argv) -> None:
  """Raises UserError when --config names no file, or a --config.<field> override
  names no field of that config. ml_collections would fail on either after loading
  (a traceback, or a failure deferred until the config is read)."""
  argument = _config_argument(argv)
  if argument is None:
    return  # absl reports the missing flag
  path = argument.split(':', 1)[0]
  if not os.path.isfile(path):
    raise errors.UserError(f'--config={argument}: no such file')
  try:
    config = flags.FLAGS[_CONFIG.name].parser.parse(argument)  # the flag's own loader
  except (TypeError, ValueError) as e:  # ml_collections puts the traceback in the message
    raise errors.UserError(f'--config={argument}: {str(e).strip().splitlines()[-1]}') from e
  names = sorted(config_checks.field_names(config))
  for arg in argv:
    match = re.match(r'--?(?:no)?config\.([^=]+)', arg)
    if match and match.group(1) not in names:
      raise config_checks.unknown_field(match.group(1), names, arg)


def parse_flags(argv):
  """absl's flag parsing (app.run's flags_parser), every error one line and exit 2."""
  try:
    check_config_argv(argv)
    return flags.FLAGS(argv)
  except (errors.UserError, flags.Error) as e:  # flags.Error: an unknown flag, a value
    _exit_with(str(e))                          # of the wrong type, no --config


def print_params(config) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from reexam_jax import models  # pylint: disable=g-import-not-at-top
  model = models.build_model(config.model)
  shapes = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0),
                                                      config.model.d_data))
  count = models.count_params(model, shapes)
  reference = models.reference_param_count(model, shapes)
  print(f'model: {config.model.name} on {config.dataset}')
  if config.get('fit_model_to_data'):
    print(f'd_data={config.model.d_data}, head={config.model.head}: counted without '
          'reading data (training fits both to the data)')
  if reference != count:
    print(f'reference_formula_params: {reference}  (the reference log\'s count, '
          'docs/reference.md, "Parameter counts")')
  print(f'params: {count}')


# Writes that fail for a reason the user can fix: a full disk, a read-only or
# forbidden path.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def main(argv):
  """Runs the mode; a run that ends in one of errors.py's exceptions prints its message
  as one line on stderr and exits with that exception's code, and so does a write that
  fails for want of space or permission (exit code 2; checkpoints are written whole or
  not at all, so the last complete one stays usable)."""
  try:
    run(argv)
  except (errors.UserError, errors.TrainingDiverged, errors.TrainingInterrupted) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)
  except OSError as e:
    if e.errno not in WRITE_ERRNOS:
      raise
    # A plain write() names no file: the workdir is then the place to look.
    print(f'error: {e.filename or "--workdir=" + str(_WORKDIR.value)}: {e.strerror}',
          file=sys.stderr)
    # Orbax's saving threads may still hold the failed write; an ordinary interpreter
    # shutdown lets them print tracebacks after the line above. Nothing is left to flush
    # or save: checkpoints are whole or absent.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(errors.UserError.exit_code)


def check_run(config, mode: str, workdir: str, allowed, score_input: Optional[str] = None):
  """Everything about the command that can be checked without JAX, before anything is
  written; returns config fitted to its data (data.fit_config; params mode reads no
  data). The library checks the workdir again for its own callers."""
  config_checks.validate(config)
  if mode == 'params':
    return config
  if not workdir:
    raise errors.UserError(f'--workdir is required for --mode={mode}')
  if mode == 'score' and not score_input:
    raise errors.UserError('--score_input is required for --mode=score: a file or '
                           'directory of sequences to score')
  if mode == 'draw_data':
    return
  allowed = workdir_lib.check_allowed(allowed)
  from reexam_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  config = data_lib.fit_config(config)
  if mode == 'train':
    workdir_lib.check_writable(workdir)
  else:
    workdir_lib.check_has_checkpoints(workdir)
  workdir_lib.check_config(config, workdir, allowed)
  return config


def run(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every save and read at INFO
  if len(argv) > 1:
    raise errors.UserError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = check_run(_CONFIG.value, _MODE.value, _WORKDIR.value, _ALLOW_CONFIG_CHANGE.value,
                     _SCORE_INPUT.value)
  if _COORDINATOR_ADDRESS.value is not None and _MODE.value not in ('train', 'eval'):
    raise errors.UserError(f'--coordinator_address: --mode={_MODE.value} runs in one process '
                           '(multi-process runs are for --mode=train and eval)')
  if _MODE.value == 'params':
    print_params(config)
    return
  print(runtime.apply(_CPU_TUNING.value), flush=True)  # before JAX is imported
  if _MODE.value == 'draw_data':
    from reexam_jax import sample  # pylint: disable=g-import-not-at-top
    path = sample.draw_data(config, os.path.join(_WORKDIR.value, 'data'),
                            num_sequences=_NUM_SAMPLES.value, seed=config.seed)
    print(f'wrote {path}')
    return
  if _MODE.value == 'sample':
    from reexam_jax import sample  # pylint: disable=g-import-not-at-top
    out = sample.sample_workdir(config, _WORKDIR.value, num_samples=_NUM_SAMPLES.value,
                                num_steps=_SAMPLE_STEPS.value,
                                temperature=_TEMPERATURE.value, seed=config.seed)
    print(f'wrote {len(out["files"])} files to {out["sample_dir"]}')
    print(f'sampling: {out["steps_per_s"]:.1f} steps/s ({_NUM_SAMPLES.value} sequences in '
          f'parallel; compile {out["compile_s"]:.1f} s)')
    return
  if _MODE.value == 'score':
    from reexam_jax import score  # pylint: disable=g-import-not-at-top
    out = score.score_files(config, _WORKDIR.value, _SCORE_INPUT.value)
    print(f'scored {out["sequences"]} sequences of '
          f'{_SCORE_INPUT.value}: ll {out["ll"]:.4f} {out["ll_unit"]}'
          + (f', iwae {out["iwae"]:.4f}' if 'iwae' in out else ''))
    print(f'wrote {out["csv"]}')
    return
  from reexam_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from reexam_jax import evaluate  # pylint: disable=g-import-not-at-top
  from reexam_jax import parallel  # pylint: disable=g-import-not-at-top
  from reexam_jax import train  # pylint: disable=g-import-not-at-top
  # A checkpoint save that fails (a full disk) is reported once, as the error line:
  # Orbax's saving threads log it too, and TensorStore's late callbacks report a
  # closed event loop.
  logging.get_absl_logger().addFilter(lambda r: not checkpointing.is_failed_write_log(r))
  report_unraisable = sys.unraisablehook
  sys.unraisablehook = lambda u: (None if checkpointing.is_closed_loop_report(u)
                                  else report_unraisable(u))
  parallel.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _MODE.value == 'train':
    results = train.train_and_evaluate(config, _WORKDIR.value)
  else:
    results = evaluate.evaluate_checkpoint(config, _WORKDIR.value)
  for key in ('valid_ll', 'test_ll', 'test_elbo', 'test_iwae', 'test_prior_estimate'):
    if key in results:
      print(f'{key}: {results[key]:.4f} {results["ll_unit"]}')
  if 'note' in results:  # e.g. IAM-OnDB: test_* are validation scores
    print(f'note: {results["note"]}')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main, flags_parser=parse_flags)
