"""Seeded train/valid/test splits of a dataset's items (docs/reference.md, "Data
pipelines"). A seed's split never changes: prepared datasets and caches are named by
their seed, so what a user prepared once stays the split of that seed."""
import random
from typing import Dict, List, Sequence


def cut(order: Sequence, n_valid: int, n_test: int) -> Dict[str, Sequence]:
  """Items in a seeded order -> valid (the first n_valid), test (the next n_test) and
  train (the rest)."""
  return {'valid': order[:n_valid], 'test': order[n_valid:n_valid + n_test],
          'train': order[n_valid + n_test:]}


def ratio_split(keys: Sequence[str], valid_frac: float, test_frac: float,
                seed: int) -> Dict[str, List[str]]:
  """The reference's split: the keys shuffled by random.Random(seed), then cut into
  int(N * valid_frac) valid, int(N * test_frac) test and the rest train; each split
  sorted. The keys are sorted first, in place of the reference's filesystem-dependent
  os.walk order."""
  keys = sorted(keys)
  random.Random(seed).shuffle(keys)
  parts = cut(keys, int(len(keys) * valid_frac), int(len(keys) * test_frac))
  return {split: sorted(part) for split, part in parts.items()}
