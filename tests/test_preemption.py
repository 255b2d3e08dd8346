"""Stopped runs resume exactly: SIGTERM/SIGINT save a checkpoint and exit 128+N, SIGKILL
at any moment leaves a workdir from which the same command ends with the results and
metrics.jsonl of a run never stopped.

Each stopped run is a real process: a `python -c` child that wraps one library function
to signal itself at a chosen moment, then runs the command line. Every other run is
`python -m reexam_jax.main` with the same flags. The children share a persistent XLA
compilation cache, so only the first run of each model compiles.
"""
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from reexam_jax import preemption
from test_train import MIDI_DIR, REPO, needs_midi, tiny_arg

# What results.json must share with an uninterrupted run (test_* of latent models too).
COMPARED = ('valid_ll', 'test_ll', 'best_step', 'test_elbo', 'test_iwae')

# argv: FAULT AT FLAG...; runs `python -m reexam_jax.main FLAG...` with FAULT installed.
FAULTY_MAIN = r'''
import os, signal, sys
from absl import app
from reexam_jax import checkpointing, evaluate, main, train

fault, at, flags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
kill = lambda signum: os.kill(os.getpid(), signum)


def before_step(action):
  """action(step) runs as each training step is called (step: its state.step), before
  it starts; action(step, dispatched=True) right after it was dispatched (in flight)."""
  make_train_step = train.make_train_step
  def make(*args):
    train_step = make_train_step(*args)
    def step(state, *rest):
      n = int(state.step)
      action(n)
      out = train_step(state, *rest)
      action(n, dispatched=True)
      return out
    return step
  train.make_train_step = make


def on_commit(step, action):
  """action() runs when Orbax renames anything out of step's temporary directory
  (`<step>.orbax-checkpoint-tmp`, in its writer thread): the files are written, the
  checkpoint is not yet committed."""
  rename = os.rename
  tmp = f'{os.sep}{step}.orbax-checkpoint-tmp'
  def renaming(src, dst, *args, **kwargs):
    if tmp in os.fspath(src):
      action()
    return rename(src, dst, *args, **kwargs)
  os.rename = renaming


def synchronous_saves():
  """Checkpointer.save returns once the checkpoint is committed (Orbax writes it in the
  background, so a kill a few steps later could otherwise still find it half-written)."""
  save = checkpointing.Checkpointer.save
  def save_and_wait(self, *args):
    save(self, *args)
    self.wait()
  checkpointing.Checkpointer.save = save_and_wait


if fault == 'step':  # SIGKILL while training step `at` + 1 runs
  synchronous_saves()
  before_step(lambda n, dispatched=False: n == at and dispatched and kill(signal.SIGKILL))
elif fault == 'save':  # SIGKILL while the checkpoint of step `at` is written
  on_commit(at, lambda: kill(signal.SIGKILL))
elif fault == 'eval':  # SIGKILL at the start of evaluation number `at`
  calls, call = [0], evaluate.Evaluator.__call__
  def counting_call(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == at:
      kill(signal.SIGKILL)
    return call(self, *args, **kwargs)
  evaluate.Evaluator.__call__ = counting_call
else:  # SIGTERM or SIGINT as training step `at` + 1 starts, again while it is saved
  signum = signal.Signals[fault]
  before_step(lambda n, dispatched=False: n == at and not dispatched and kill(signum))
  def again():
    os.write(2, f'sending {fault} again\n'.encode())
    kill(signum)
  on_commit(at + 1, again)

app.run(main.main, argv=['reexam_jax.main'] + flags)
'''


def command_flags(model, workdir):
  return [f'--config={REPO}/configs/nottingham_{model}.py:{tiny_arg()}',
          f'--config.data_dir={MIDI_DIR}', f'--workdir={workdir}']


def run(env, flags, fault=()):
  """The command line with `flags`; with fault=(FAULT, AT), FAULTY_MAIN's fault."""
  prefix = ['-c', FAULTY_MAIN, *map(str, fault)] if fault else ['-m', 'reexam_jax.main']
  return subprocess.run([sys.executable, *prefix, *flags], env=env, capture_output=True,
                        text=True, timeout=600)


def outcome(workdir):
  """(COMPARED entries of results.json, metrics.jsonl records) of a finished run."""
  results = json.loads((workdir / 'results.json').read_text())
  metrics = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return {k: results[k] for k in COMPARED if k in results}, metrics


def checkpoint_dirs(workdir):
  return sorted(os.listdir(workdir / 'checkpoints'))


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  """The children's environment: one XLA compilation cache for all of them."""
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp('xla')),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')


@pytest.fixture(scope='module')
def uninterrupted(env, tmp_path_factory):
  """model -> outcome() of a run never stopped (each model trained once per module)."""
  outcomes = {}

  def get(model):
    if model not in outcomes:
      workdir = tmp_path_factory.mktemp(f'uninterrupted_{model}')
      out = run(env, command_flags(model, workdir))
      assert out.returncode == 0, out.stderr[-3000:]
      outcomes[model] = outcome(workdir)
    return outcomes[model]
  return get


# tiny_arg: 6 steps; evaluation, log line and checkpoint every 3 steps.
# moment -> (fault, at, checkpoint directories left by the kill)
KILLS = {
    'step': ('step', 4, ['3']),  # in step 5: resumes from step 3
    'save': ('save', 6, ['3', '6.orbax-checkpoint-tmp']),  # half-written 6: resumes from 3
    'eval': ('eval', 3, ['3', '6']),  # first test-set evaluation: resumes at 6, evaluates
}


@needs_midi
@pytest.mark.parametrize('moment', KILLS)
@pytest.mark.parametrize('model', ['f_rnn', 'f_srnn'])
def test_sigkill_then_same_command_matches_uninterrupted_run(env, uninterrupted, tmp_path,
                                                             model, moment):
  fault, at, left = KILLS[moment]
  flags = command_flags(model, tmp_path)
  killed = run(env, flags, fault=(fault, at))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert checkpoint_dirs(tmp_path) == left

  resumed = run(env, flags)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert checkpoint_dirs(tmp_path) == ['3', '6']  # Orbax replaced the half-written one
  assert outcome(tmp_path) == uninterrupted(model)


@needs_midi
@pytest.mark.parametrize('signame', ['SIGTERM', 'SIGINT'])
def test_stop_signal_saves_exits_and_same_command_resumes(env, uninterrupted, tmp_path,
                                                          signame):
  """The signal arrives as step 4 starts and again while its checkpoint is written:
  step 4 completes, is saved whole, and the run ends 128+N with one line. Step 4 is
  between two log lines, so the resumed run must also carry the logging window."""
  flags = command_flags('f_rnn', tmp_path)
  stopped = run(env, flags, fault=(signame, 3))
  signum = signal.Signals[signame]
  assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
  assert f'sending {signame} again' in stopped.stderr
  assert stopped.stderr.splitlines()[-1] == (
      f'error: {signame}: stopped after step 4 of 6 and saved a checkpoint in {tmp_path}; '
      'run the same command to resume')
  assert checkpoint_dirs(tmp_path) == ['3', '4']

  resumed = run(env, flags)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert outcome(tmp_path) == uninterrupted('f_rnn')


def test_stop_signals_record_the_first_and_restore_handlers():
  previous = [signal.getsignal(s) for s in preemption.STOP_SIGNALS]
  with preemption.stop_signals() as stop:
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGTERM)
    assert stop.signum == signal.SIGINT and stop.name == 'SIGINT'
  assert [signal.getsignal(s) for s in preemption.STOP_SIGNALS] == previous


def test_stop_signals_restore_handlers_when_the_block_raises():
  previous = [signal.getsignal(s) for s in preemption.STOP_SIGNALS]
  with pytest.raises(ZeroDivisionError):
    with preemption.stop_signals():
      1 / 0  # pylint: disable=pointless-statement
  assert [signal.getsignal(s) for s in preemption.STOP_SIGNALS] == previous


def test_stop_signals_outside_the_main_thread_change_nothing():
  seen = []

  def worker():
    with preemption.stop_signals() as stop:
      seen.append((stop.signum, signal.getsignal(signal.SIGTERM)))

  thread = threading.Thread(target=worker)
  thread.start()
  thread.join()
  assert seen == [(None, signal.getsignal(signal.SIGTERM))]
