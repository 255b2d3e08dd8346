"""Process tuning (reexam_jax.runtime): the huge-page tunable is added without losing the
user's tunables or overriding their choice, and a command line that re-executes itself
comes back with it, once."""
import os
import subprocess
import sys

import pytest

from reexam_jax import runtime


def test_hugepage_environment_adds_keeps_and_respects():
  assert runtime.hugepage_environment({})['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1'
  kept = runtime.hugepage_environment({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2', 'A': 'b'})
  assert kept == {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1',
                  'A': 'b'}
  chosen = {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}
  assert runtime.hugepage_environment(chosen) == chosen


SCRIPT = ('import os, sys; from reexam_jax import runtime; print("start", flush=True); '
          'runtime.reexec_with_hugepages(); print("tunables", os.environ.get("GLIBC_TUNABLES"), '
          'sys.argv[1:], runtime.setup()["hugepages"])')


def _run(**env):
  env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
  return subprocess.run([sys.executable, '-c', SCRIPT, 'arg'], env=env, check=True,
                        capture_output=True, text=True).stdout.split('\n')


@pytest.mark.skipif(runtime._glibc() is None, reason='glibc only')
def test_command_line_reexecutes_once_with_hugepages():
  lines = _run(GLIBC_TUNABLES=None, REEXAM_MALLOC_TUNING=None)
  assert lines.count('start') == 2  # the original process and its one replacement
  assert "tunables glibc.malloc.hugetlb=1 ['arg'] True" in lines


def test_tuning_off_means_no_reexec():
  lines = _run(GLIBC_TUNABLES=None, REEXAM_MALLOC_TUNING='0')
  assert lines.count('start') == 1
  assert "tunables None ['arg'] False" in lines
