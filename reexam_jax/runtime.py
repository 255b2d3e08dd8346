"""Process-level tuning done once at start-up, before the first jitted step.

XLA:CPU allocates and frees many multi-MiB buffers per training step. With glibc's
default malloc those go through mmap/munmap (or trim the heap) every time, which costs
page faults and system time comparable to the maths for the small MIDI models (see
shared/perf-notes.md). Two remedies, both no-ops without glibc (macOS, musl) and both
off with REEXAM_MALLOC_TUNING=0:

- `setup()` raises glibc's thresholds so freed buffers up to 32 MiB (glibc's limit) are
  reused from the heap.
- `reexec_with_hugepages()`, for command lines: larger buffers are still fresh mmaps
  every step, each 4 KiB page a fault on first touch (MIDI RNN-hier: 794k faults and
  1.8 s of system time in a 5.9 s step). glibc's tunable glibc.malloc.hugetlb=1 backs
  them with transparent huge pages instead (2 MiB, 512x fewer faults; glibc >= 2.35,
  THP in `madvise` or `always` mode), but glibc reads tunables only at start-up, so the
  process restarts itself once with it set. Library users can export
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 themselves.
"""
import ctypes
import os
import sys
from typing import Dict, Mapping

# glibc <malloc.h> mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_MiB = 1 << 20
HUGEPAGE_TUNABLE = 'glibc.malloc.hugetlb=1'

# (parameter, value): mmap only buffers >= 32 MiB (glibc's maximum on 64-bit), never
# give the heap top back below 4 GiB of free space, grow the heap 256 MiB at a time.
MALLOC_SETTINGS = ((_M_MMAP_THRESHOLD, 32 * _MiB),
                   (_M_TRIM_THRESHOLD, 4096 * _MiB),
                   (_M_TOP_PAD, 256 * _MiB))

_done = None


def _glibc():
  """The process's glibc as a ctypes library, or None when libc is not glibc."""
  if not sys.platform.startswith('linux'):
    return None
  try:
    libc = ctypes.CDLL(None)
    version = libc.gnu_get_libc_version  # only glibc has it
    version.restype = ctypes.c_char_p
    version()
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc
  except (OSError, AttributeError):
    return None


def _tuning_enabled() -> bool:
  return os.environ.get('REEXAM_MALLOC_TUNING', '1') != '0'


def hugepage_environment(env: Mapping[str, str]) -> Dict[str, str]:
  """env with HUGEPAGE_TUNABLE added to GLIBC_TUNABLES (kept as it is when it already
  sets glibc.malloc.hugetlb, so an explicit choice wins)."""
  env = dict(env)
  tunables = env.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb=' not in tunables:
    env['GLIBC_TUNABLES'] = ':'.join(filter(None, (tunables, HUGEPAGE_TUNABLE)))
  return env


def reexec_with_hugepages() -> None:
  """Replaces this process by the same command line (sys.orig_argv) with
  hugepage_environment(), unless it has it already. Call it first thing in a command
  line's entry point, never from library code (it restarts the interpreter)."""
  if not _tuning_enabled() or _glibc() is None:
    return
  env = hugepage_environment(os.environ)
  if env['GLIBC_TUNABLES'] != os.environ.get('GLIBC_TUNABLES'):
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def tune_malloc() -> bool:
  """Applies MALLOC_SETTINGS through glibc's mallopt; True if all were accepted."""
  if not _tuning_enabled():
    return False
  libc = _glibc()
  if libc is None:
    return False
  return all(libc.mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS)


def setup() -> dict:
  """Idempotent start-up tuning; returns what was applied (for logs)."""
  global _done
  if _done is None:
    _done = dict(malloc_tuned=tune_malloc(),
                 hugepages=HUGEPAGE_TUNABLE in os.environ.get('GLIBC_TUNABLES', ''))
  return _done
