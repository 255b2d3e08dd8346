"""Process-level tuning done once at start-up, before the first jitted step.

XLA:CPU allocates and frees many multi-MiB buffers per training step. With glibc's
default malloc those go through mmap/munmap (or trim the heap) every time, which costs
page faults and system time comparable to the maths for the small MIDI models (see
shared/perf-notes.md). `setup()` raises glibc's thresholds so freed buffers are reused
from the heap. It is a no-op on platforms without glibc (macOS, musl) and can be turned
off with REEXAM_MALLOC_TUNING=0.
"""
import ctypes
import ctypes.util
import os
import sys

# glibc <malloc.h> mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_MiB = 1 << 20
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


def tune_malloc() -> bool:
  """Applies MALLOC_SETTINGS through glibc's mallopt; True if all were accepted."""
  if os.environ.get('REEXAM_MALLOC_TUNING', '1') == '0':
    return False
  libc = _glibc()
  if libc is None:
    return False
  return all(libc.mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS)


def setup() -> dict:
  """Idempotent start-up tuning; returns what was applied (for logs)."""
  global _done
  if _done is None:
    _done = dict(malloc_tuned=tune_malloc())
  return _done
