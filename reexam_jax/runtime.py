"""Start-up tuning of glibc's malloc for XLA:CPU, for command lines only.

XLA:CPU allocates and frees many multi-MiB buffers per training step. With glibc's
default malloc those go through mmap/munmap (or trim the heap) every time, which costs
page faults and system time comparable to the maths for the small MIDI models (measured
in docs/benchmarks.md). Two remedies, both process-wide, so the library never applies
them: `main.py --cpu_tuning=auto` (the default) does, through `apply`:

- malloc thresholds: glibc's mallopt keeps freed buffers up to 32 MiB (glibc's limit)
  on the heap for reuse.
- huge pages: larger buffers are still fresh mmaps every step, each 4 KiB page a fault
  on first touch (MIDI RNN-hier: 794k faults and 1.8 s of system time in a 5.9 s
  step). glibc's tunable glibc.malloc.hugetlb=1 backs them with transparent huge pages
  instead (2 MiB, 512x fewer faults; glibc >= 2.35, THP in `madvise` or `always` mode),
  but glibc reads tunables only at start-up, so the process restarts itself once with
  it set. Library users can export GLIBC_TUNABLES=glibc.malloc.hugetlb=1 themselves.

Both help only XLA's CPU backend, so `apply` decides before JAX is imported (importing
it takes seconds, and a restart would pay that twice) whether JAX can only run on the
CPU: JAX_PLATFORMS says cpu first, or no accelerator plugin is installed.
"""
import ctypes
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
from typing import Dict, List, Mapping

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
MALLOC_SUMMARY = 'mmap threshold 32 MiB, trim threshold 4 GiB, top pad 256 MiB'


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


def accelerator_plugins() -> List[str]:
  """JAX's accelerator plugins installed here, found as JAX finds them (modules under
  the jax_plugins namespace, `jax_plugins` entry points, the libtpu package), without
  importing JAX."""
  names = [entry.value for entry in importlib.metadata.entry_points(group='jax_plugins')]
  namespace = importlib.util.find_spec('jax_plugins')
  if namespace is not None and namespace.submodule_search_locations:
    names += [m.name for m in pkgutil.iter_modules(namespace.submodule_search_locations)]
  if importlib.util.find_spec('libtpu') is not None:
    names.append('libtpu')
  return sorted(set(names))


def cpu_only(env: Mapping[str, str]) -> bool:
  """True when JAX will run on its CPU backend: JAX_PLATFORMS (in env) names cpu first,
  or it is unset and no accelerator plugin is installed."""
  platforms = env.get('JAX_PLATFORMS', '')
  if platforms:
    return platforms.split(',')[0].strip() == 'cpu'
  return not accelerator_plugins()


def hugepage_environment(env: Mapping[str, str]) -> Dict[str, str]:
  """env with HUGEPAGE_TUNABLE added to GLIBC_TUNABLES (kept as it is when it already
  sets glibc.malloc.hugetlb, so an explicit choice wins)."""
  env = dict(env)
  tunables = env.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb=' not in tunables:
    env['GLIBC_TUNABLES'] = ':'.join(filter(None, (tunables, HUGEPAGE_TUNABLE)))
  return env


def restart_with_hugepages() -> None:
  """Replaces this process by the same command line (sys.orig_argv) with
  hugepage_environment(), unless it has it already."""
  env = hugepage_environment(os.environ)
  if env['GLIBC_TUNABLES'] != os.environ.get('GLIBC_TUNABLES'):
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def tune_malloc(libc) -> bool:
  """Applies MALLOC_SETTINGS through glibc's mallopt; True if all were accepted."""
  return all(libc.mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS)


def apply(choice: str) -> str:
  """Applies --cpu_tuning=choice ('auto' or 'off') to this process and returns the one
  line that says what was applied.

  auto, when JAX will run on the CPU (`cpu_only`) and libc is glibc: restarts the
  process once with huge pages (it returns only in the restarted process, unless
  GLIBC_TUNABLES already sets glibc.malloc.hugetlb) and raises the malloc thresholds.
  Call it before importing JAX, from a command line's entry point only.
  """
  if choice == 'off':
    return 'cpu tuning: off (--cpu_tuning=off)'
  if not cpu_only(os.environ):
    return ('cpu tuning: off (JAX may run on an accelerator: JAX_PLATFORMS='
            f'{os.environ.get("JAX_PLATFORMS", "")!r}, plugins {accelerator_plugins()})')
  libc = _glibc()
  if libc is None:
    return 'cpu tuning: off (libc is not glibc)'
  restart_with_hugepages()
  malloc = (f'malloc thresholds raised ({MALLOC_SUMMARY})' if tune_malloc(libc)
            else 'malloc thresholds unchanged (mallopt refused them)')
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  hugepages = 'on' if HUGEPAGE_TUNABLE in tunables else 'off'
  return f'cpu tuning: {malloc}; huge pages {hugepages} (GLIBC_TUNABLES={tunables})'
