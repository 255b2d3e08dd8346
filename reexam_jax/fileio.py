"""Atomic file writes, and the JSON files a run writes (results.json,
eval_results.json, metrics.jsonl): always valid JSON, whole files written atomically.
Data caches and downloads (reexam_jax/data) are written with `write_bytes` too.

JSON has no NaN or Infinity. A non-finite number is written as null and its key listed
under "nonfinite" (e.g. `"valid_ll": null, "nonfinite": ["valid_ll"]`), so a reader
sees that a number went wrong rather than that it is missing. Anything else that is not
JSON (a nested NaN, an array) fails loudly (`allow_nan=False`) instead of being written.
"""
import contextlib
import json
import math
import numbers
import os
from typing import Any, Dict


def finite_or_null(record: Dict[str, Any]) -> Dict[str, Any]:
  """record with every non-finite number replaced by None and those keys listed, sorted,
  under 'nonfinite' (no 'nonfinite' key when all numbers are finite)."""
  out, nonfinite = {}, []
  for key, value in record.items():
    if isinstance(value, numbers.Real) and not math.isfinite(value):
      value = None
      nonfinite.append(key)
    out[key] = value
  if nonfinite:
    out['nonfinite'] = sorted(nonfinite)
  return out


def json_line(record: Dict[str, Any]) -> str:
  """One JSON Lines line (with its newline), keys sorted."""
  return json.dumps(finite_or_null(record), sort_keys=True, allow_nan=False) + '\n'


@contextlib.contextmanager
def _naming(path: str):
  """Re-raises an OSError that names no file (a write to a full disk) naming path."""
  try:
    yield
  except OSError as e:
    if e.filename:
      raise
    raise OSError(e.errno, e.strerror, path) from e


def write_bytes(path: str, data: bytes) -> None:
  """Writes path atomically: a temporary file, flushed to disk, then renamed over path,
  so a reader (or a run killed midway) sees the old file or the new one, never a part.
  The temporary is named after the process, so processes writing the same file (seeds
  preparing one cache) never write into each other's. A failed write (a full disk)
  removes the temporary file and raises OSError naming path."""
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with _naming(path), open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  """Writes text (UTF-8) to path atomically (see write_bytes)."""
  write_bytes(path, text.encode())


def write_json(path: str, record: Dict[str, Any]) -> None:
  """Writes record as an indented JSON object, atomically (see write_bytes)."""
  write_text(path, json.dumps(finite_or_null(record), indent=2, sort_keys=True,
                              allow_nan=False) + '\n')


def append_json_line(path: str, record: Dict[str, Any]) -> None:
  """Appends record to the JSON Lines file path with a single write."""
  with _naming(path), open(path, 'a') as f:
    f.write(json_line(record))


def flatten(tree: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
  """{'model': {'d_rnn': 8}} -> {'model.d_rnn': 8}."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out
