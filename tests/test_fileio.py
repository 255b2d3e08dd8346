"""fileio: strict JSON with non-finite numbers as null plus a flag; atomic writes."""
import json
import math
import os

import numpy as np
import pytest

from reexam_jax import fileio


def test_nonfinite_numbers_become_null_and_are_listed():
  record = dict(step=3, valid_ll=math.nan, test_ll=np.float32(-math.inf), loss=1.5,
                unit='nats', steps=None)
  assert fileio.finite_or_null(record) == dict(
      step=3, valid_ll=None, test_ll=None, loss=1.5, unit='nats', steps=None,
      nonfinite=['test_ll', 'valid_ll'])
  assert 'nonfinite' not in fileio.finite_or_null(dict(loss=1.5))
  assert json.loads(fileio.json_line(record))['nonfinite'] == ['test_ll', 'valid_ll']


def test_write_json_is_strict_and_leaves_no_temporary(tmp_path):
  path = str(tmp_path / 'results.json')
  fileio.write_json(path, dict(valid_ll=math.inf, steps=6))
  assert json.loads((tmp_path / 'results.json').read_text()) == dict(
      valid_ll=None, steps=6, nonfinite=['valid_ll'])
  with pytest.raises(ValueError, match='Out of range float'):
    fileio.write_json(path, dict(per_step=[1.0, math.nan]))  # a slip fails loudly
  assert json.loads((tmp_path / 'results.json').read_text())['steps'] == 6  # old file kept
  fileio.append_json_line(str(tmp_path / 'm.jsonl'), dict(step=1, loss=math.nan))
  assert (tmp_path / 'm.jsonl').read_text() == (
      '{"loss": null, "nonfinite": ["loss"], "step": 1}\n')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['m.jsonl', 'results.json']


def test_failed_write_names_the_file(tmp_path):
  path = str(tmp_path / 'missing' / 'results.json')
  with pytest.raises(FileNotFoundError) as e:
    fileio.write_json(path, dict(steps=6))
  assert e.value.filename.startswith(path)  # path or its temporary file
  if os.path.exists('/dev/full'):  # every write fails with ENOSPC and names no file
    with pytest.raises(OSError, match='No space left on device') as e:
      fileio.append_json_line('/dev/full', dict(step=1))
    assert e.value.filename == '/dev/full'
