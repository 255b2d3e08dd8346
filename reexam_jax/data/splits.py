"""Train/valid/test splits of a dataset's items (docs/reference.md, "Data pipelines"):
seeded, or read from list files. A seed's split never changes: prepared datasets and
caches are named by their seed, so what a user prepared once stays the split of that
seed. Light on purpose (no TFDS): the speech builders and the own-data readers share it."""
import os
import random
from typing import Dict, List, Optional, Sequence

SPLITS = ('train', 'valid', 'test')


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


LIST_NAMES = ('{}.txt', '{}_files_list.txt', '{}_file_list.txt')


def find_list_files(list_dir: str) -> Optional[Dict[str, str]]:
  """{split: list file} when list_dir holds one list per split (train.txt,
  train_files_list.txt or train_file_list.txt, ...); None when it holds none."""
  found = {}
  for split in SPLITS:
    for pattern in LIST_NAMES:
      path = os.path.join(list_dir, pattern.format(split))
      if os.path.isfile(path):
        found[split] = path
        break
  if not found:
    return None
  if len(found) < len(SPLITS):
    missing = [s for s in SPLITS if s not in found]
    raise FileNotFoundError(f'split lists in {list_dir}: found {sorted(found.values())} '
                            f'but none for {missing} (expected e.g. {missing[0]}.txt)')
  return found


def _entry_key(entry: str) -> str:
  """List entry -> key: '.t7' and a data-file extension dropped, '/' separators."""
  entry = entry.strip().replace('\\', '/')
  if entry.endswith('.t7'):
    entry = entry[:-3]
  stem, ext = os.path.splitext(entry)
  return stem if ext.lower() in ('.wav', '.mp3', '.flac', '.sph', '.mid', '.midi', '.npy',
                                  '.npz') else entry


def split_from_lists(keys: Sequence[str], lists: Dict[str, str]) -> Dict[str, List[str]]:
  """Keys of each split in list-file order. An entry matches a file by its relative
  path without extension, or by its bare file name when that is unique."""
  by_stem: Dict[str, List[str]] = {}
  for k in keys:
    by_stem.setdefault(os.path.basename(k), []).append(k)
  key_set = set(keys)
  splits = {}
  for split, path in lists.items():
    with open(path) as f:
      entries = [_entry_key(line) for line in f if line.strip()]
    chosen = []
    for entry in entries:
      if entry.replace('/', os.sep) in key_set:
        chosen.append(entry.replace('/', os.sep))
      elif len(by_stem.get(os.path.basename(entry), [])) == 1:
        chosen.append(by_stem[os.path.basename(entry)][0])
      else:
        raise FileNotFoundError(f'{path}: entry {entry!r} matches no (or several) audio '
                                'files')
    splits[split] = chosen
  seen: Dict[str, str] = {}
  for split, chosen in splits.items():
    for key in chosen:
      if seen.setdefault(key, split) != split:
        raise ValueError(f'{key} is listed in both {lists[seen[key]]} and {lists[split]}')
  return splits
