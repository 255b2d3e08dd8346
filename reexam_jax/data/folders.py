"""Finding a user's data files under a directory and splitting them into train/valid/
test, as the speech `wav_folder` dataset does: by train/valid/test list files when the
list directory holds them, else by a seeded draw over the sorted keys
(`splits.ratio_split`), so the split depends only on the seed and the file
names, never on the filesystem's order. Every failure is an `errors.UserError`."""
import os
from typing import Dict, List, Optional, Sequence

from reexam_jax import errors
from reexam_jax.data import splits as split_lib

SPLITS = split_lib.SPLITS


def find_files(root: str, exts: Sequence[str]) -> Dict[str, str]:
  """{key: path}, sorted by key, of the files under root (recursive) whose extension
  is in exts (any case); key = path relative to root without its extension (what list
  files name). Two files with one key (a.mid and a.midi) are a UserError: neither is
  dropped silently."""
  exts = tuple(e.lower() for e in exts)
  found: Dict[str, str] = {}
  for dirpath, _, names in os.walk(root):
    for name in sorted(names):
      stem, ext = os.path.splitext(name)
      if ext.lower() not in exts:
        continue
      key = os.path.relpath(os.path.join(dirpath, stem), root)
      path = os.path.join(dirpath, name)
      if key in found:
        raise errors.UserError(f'{found[key]} and {path} have the same name; rename one '
                               '(list files name files without their extension)')
      found[key] = path
  return dict(sorted(found.items()))


def split_keys(keys: Sequence[str], list_dir: Optional[str], valid_frac: float,
               test_frac: float, seed: int) -> Dict[str, List[str]]:
  """{split: keys}: list-file order when list_dir holds train/valid/test lists (keys
  listed in none are left out), else `ratio_split` of the sorted keys by seed."""
  if not (0 <= valid_frac and 0 <= test_frac and valid_frac + test_frac < 1):
    raise ValueError(f'valid_frac={valid_frac}, test_frac={test_frac}: each must be >= 0 '
                     'and their sum < 1')
  try:
    lists = split_lib.find_list_files(list_dir) if list_dir else None
    if lists is not None:
      return split_lib.split_from_lists(keys, lists)
  except (OSError, ValueError) as e:
    raise errors.UserError(str(e)) from e
  return split_lib.ratio_split(keys, valid_frac, test_frac, seed)


def check_splits(splits: Dict[str, list], source: str) -> None:
  """UserError naming source when a split has no sequences."""
  for split in SPLITS:
    if not splits[split]:
      total = sum(len(splits[s]) for s in SPLITS)
      raise errors.UserError(
          f'{source}: the {split} split is empty ({total} sequences in all); add data, '
          'raise valid_frac/test_frac, or give train/valid/test list files')
