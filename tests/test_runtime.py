"""CPU tuning (reexam_jax.runtime): only the command line applies it, as --cpu_tuning
says; the library leaves the process alone. The huge-page tunable is added without
losing the user's tunables or overriding their choice, and a command line that restarts
itself for it comes back once, with one line saying what was applied."""
import os
import subprocess
import sys

import pytest

from reexam_jax import runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTTINGHAM = os.path.join(REPO, 'configs', 'nottingham_f_rnn.py')


def _run(args, script, returncode=0, **env):
  """python -c script args in the repository with env's changes (None: unset) -> the
  stdout lines, after checking the exit code."""
  env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
  out = subprocess.run([sys.executable, '-c', script, *args], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == returncode, out.stderr[-3000:]
  return out.stdout.splitlines()


def test_hugepage_environment_adds_keeps_and_respects():
  assert runtime.hugepage_environment({})['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1'
  kept = runtime.hugepage_environment({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2', 'A': 'b'})
  assert kept == {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1',
                  'A': 'b'}
  chosen = {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}
  assert runtime.hugepage_environment(chosen) == chosen


def test_cpu_only_follows_jax_platforms_then_plugins():
  assert runtime.cpu_only({'JAX_PLATFORMS': 'cpu'})
  assert runtime.cpu_only({'JAX_PLATFORMS': 'cpu,cuda'})
  assert not runtime.cpu_only({'JAX_PLATFORMS': 'cuda,cpu'})
  assert not runtime.cpu_only({'JAX_PLATFORMS': 'tpu'})
  assert runtime.cpu_only({}) == (not runtime.accelerator_plugins())


def test_off_and_accelerators_change_nothing(monkeypatch):
  monkeypatch.delenv('GLIBC_TUNABLES', raising=False)
  assert runtime.apply('off') == 'cpu tuning: off (--cpu_tuning=off)'
  monkeypatch.setenv('JAX_PLATFORMS', 'cuda')
  assert runtime.apply('auto').startswith("cpu tuning: off (JAX may run on an accelerator: "
                                          "JAX_PLATFORMS='cuda'")
  assert 'GLIBC_TUNABLES' not in os.environ


LIBRARY = """
import os, sys
import jax  # sets a few variables of its own (TF_CPP_MIN_LOG_LEVEL, ...)
env = dict(os.environ)
from reexam_jax import checkpointing, evaluate, sample, state, train
assert 'reexam_jax.runtime' not in sys.modules, 'the library imported runtime'
assert dict(os.environ) == env, 'the library changed the environment'
print('untouched')
"""


def test_library_never_tunes():
  """Importing the library (train, evaluate, sample, ...) neither imports runtime, so
  nothing in it can call mallopt or restart the process, nor changes the environment."""
  assert _run([], LIBRARY, GLIBC_TUNABLES=None) == ['untouched']


# `python -m reexam_jax.main` with training replaced by a print of the tunables.
MAIN = """
import os, sys, types
from absl import app, flags
print('start', flush=True)
fake = types.ModuleType('reexam_jax.train')
fake.train_and_evaluate = lambda config, workdir: print(
    'train', os.environ.get('GLIBC_TUNABLES'), flush=True) or {}
sys.modules['reexam_jax.train'] = fake
from reexam_jax import main
flags.mark_flag_as_required('config')
app.run(main.main, flags_parser=main.parse_flags)
"""


def _tuning_lines(lines):
  return [l for l in lines if l.startswith('cpu tuning:')]


@pytest.mark.skipif(runtime._glibc() is None, reason='glibc only')
def test_command_line_restarts_once_and_says_so(tmp_path):
  lines = _run([f'--config={NOTTINGHAM}', f'--workdir={tmp_path}'], MAIN,
               GLIBC_TUNABLES=None, JAX_PLATFORMS='cpu')
  assert lines.count('start') == 2  # the original process and its one replacement
  assert _tuning_lines(lines) == [
      f'cpu tuning: malloc thresholds raised ({runtime.MALLOC_SUMMARY}); huge pages on '
      '(GLIBC_TUNABLES=glibc.malloc.hugetlb=1)']
  assert lines[-1] == 'train glibc.malloc.hugetlb=1'


def test_command_line_tuning_off(tmp_path):
  lines = _run([f'--config={NOTTINGHAM}', f'--workdir={tmp_path}', '--cpu_tuning=off'],
               MAIN, GLIBC_TUNABLES=None, JAX_PLATFORMS='cpu')
  assert lines.count('start') == 1
  assert _tuning_lines(lines) == ['cpu tuning: off (--cpu_tuning=off)']
  assert lines[-1] == 'train None'


def test_params_is_not_tuned():
  lines = _run([f'--config={NOTTINGHAM}', '--mode=params'], MAIN, GLIBC_TUNABLES=None,
               JAX_PLATFORMS='cpu')
  assert lines.count('start') == 1
  assert not _tuning_lines(lines)
  assert lines[-1].startswith('params: ')


def test_help_documents_the_flag_and_is_not_tuned():
  for flag in ('--help', '--helpfull'):  # absl's help ends with exit code 1
    lines = _run([flag], MAIN, returncode=1, GLIBC_TUNABLES=None)
    assert lines.count('start') == 1
    assert not _tuning_lines(lines)
  assert any(l.strip().startswith('--cpu_tuning: <auto|off>') for l in lines)
