"""Any multivariate sequences saved with numpy, as float32 [T, D] arrays.

Sources (`path`):
  - a directory of .npy/.npz files, searched recursively: an .npy holds one [T, D]
    sequence, an .npz one or several (one per array). A sequence's key (what list
    files name) is the file's path under the directory without extension, plus
    '/<array name>' for an .npz holding several arrays;
  - a single .npy/.npz file, read the same way;
  - an .npz whose arrays are named train, valid and test (the only data file): the
    split as given, each an object array of [T, D] arrays or one [N, T, D] array. Only
    these files are unpickled (object arrays need it): load only files you trust.
Without a given split, sequences are split by list files or by seed (folders.py).

Binary data (every value 0 or 1) stay as they are, for Bernoulli heads. Real data are
standardised per dimension with the train split's mean and (population) std; a
dimension whose train std is <= min_std (constant) is only centred (std recorded as 1).
`kind` forces either. Raw values = sequence * stats.std + stats.mean.
"""
import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from reexam_jax import errors
from reexam_jax.data import folders

EXTS = ('.npy', '.npz')
KINDS = ('auto', 'binary', 'real')


@dataclasses.dataclass(frozen=True)
class ArrayStats:
  """How the returned sequences were made from the raw values."""
  kind: str  # 'binary' or 'real'
  mean: np.ndarray  # [D] float32 (zeros for binary data)
  std: np.ndarray  # [D] float32 (ones for binary data)
  dim: int  # D


def check_sequence(x: np.ndarray, name: str) -> np.ndarray:
  """x as float32 [T, D]; UserError naming `name` unless x is a finite, non-empty
  2-D array of numbers (bool, int or float)."""
  if x.dtype.kind not in 'biuf':
    raise errors.UserError(f'{name}: dtype {x.dtype}; expected numbers (float, int or '
                           'bool) in a [T, D] array')
  if x.ndim == 1:
    raise errors.UserError(f'{name}: 1-D array of shape {x.shape}; a sequence is [T, D]: '
                           'reshape it to [T, 1] (x[:, None]) for one value per step')
  if x.ndim != 2:
    raise errors.UserError(f'{name}: shape {x.shape}; expected a [T, D] sequence')
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise errors.UserError(f'{name}: empty sequence of shape {x.shape}')
  with np.errstate(over='ignore'):  # values beyond float32 become Inf, reported below
    x = x.astype(np.float32)
  bad = np.argwhere(~np.isfinite(x))
  if len(bad):
    raise errors.UserError(f'{name}: NaN or Inf (or a value beyond float32) at step '
                           f'{bad[0][0]}, dimension {bad[0][1]}')
  return x


def _numpy_read(read, where: str):
  """read() of numpy data; UserError naming `where` when it fails (numpy refuses to
  unpickle object arrays, so those fail here)."""
  try:
    return read()
  except Exception as e:  # pylint: disable=broad-except; numpy raises many types
    if 'Object arrays cannot be loaded' in str(e):
      raise errors.UserError(f'{where}: an object array (dtype=object); save numeric '
                             '[T, D] arrays') from e
    raise errors.UserError(f'{where}: not a readable .npy/.npz file ({e})') from e


def _load(path: str, allow_pickle: bool = False):
  """np.load(path): an array (.npy) or a lazy NpzFile (.npz)."""
  if os.path.getsize(path) == 0:
    raise errors.UserError(f'{path}: empty file')
  return _numpy_read(lambda: np.load(path, allow_pickle=allow_pickle), path)


def _file_sequences(path: str, key: str) -> Dict[str, Tuple[str, np.ndarray]]:
  """{key: (name, [T, D] float32)} of one .npy/.npz file; name says where it is in
  messages (module docstring for the keys)."""
  if path.lower().endswith('.npy'):
    return {key: (path, check_sequence(_load(path), path))}
  with _load(path) as npz:
    if not npz.files:
      raise errors.UserError(f'{path}: holds no arrays')
    out = {}
    for name in npz.files:
      where = f'{path}[{name}]'
      x = _numpy_read(lambda name=name: npz[name], where)
      out[key if len(npz.files) == 1 else os.path.join(key, name)] = (
          where, check_sequence(x, where))
    return out


def _is_split_file(path: str) -> bool:
  """Whether path is an .npz with arrays train, valid and test (UserError when it has
  only some of them)."""
  if not path.lower().endswith('.npz'):
    return False
  with _load(path) as npz:
    present = [s for s in folders.SPLITS if s in npz.files]
    if present and sorted(npz.files) != sorted(folders.SPLITS):
      raise errors.UserError(f'{path}: arrays {sorted(npz.files)}; a split file holds '
                             f'exactly {list(folders.SPLITS)}')
  return bool(present)


def _check_dims(named: List[Tuple[str, np.ndarray]]) -> None:
  """UserError naming the first sequence whose D differs from the first one's."""
  first, x0 = named[0]
  for name, x in named:
    if x.shape[1] != x0.shape[1]:
      raise errors.UserError(f'{name}: D={x.shape[1]} values per step, but {first} has '
                             f'D={x0.shape[1]}; every sequence needs the same D')


def _split_file(path: str) -> Dict[str, List[np.ndarray]]:
  """The sequences of a train/valid/test .npz."""
  named = {}
  with _load(path, allow_pickle=True) as npz:
    for split in folders.SPLITS:
      seqs = _numpy_read(lambda split=split: npz[split], f'{path}[{split}]')
      if seqs.dtype != object and seqs.ndim != 3:
        raise errors.UserError(f'{path}[{split}]: shape {seqs.shape}; expected an object '
                               'array of [T, D] arrays or one [N, T, D] array')
      wheres = [f'{path}[{split}][{i}]' for i in range(len(seqs))]
      named[split] = [(w, check_sequence(np.asarray(x), w)) for w, x in zip(wheres, seqs)]
  _check_dims([n for split in folders.SPLITS for n in named[split]])
  return {s: [x for _, x in named[s]] for s in folders.SPLITS}


def _folder_split(files: Dict[str, str], list_dir: Optional[str], valid_frac: float,
                  test_frac: float, seed: int) -> Dict[str, List[np.ndarray]]:
  """Sequences of the data files {key: path}, split by list files or seed."""
  seqs: Dict[str, Tuple[str, np.ndarray]] = {}
  for file_key, file_path in files.items():
    for key, (where, x) in _file_sequences(file_path, file_key).items():
      if key in seqs:
        raise errors.UserError(f'{where} and {seqs[key][0]} are both sequence {key!r}; '
                               'rename one')
      seqs[key] = (where, x)
  _check_dims(list(seqs.values()))
  splits = folders.split_keys(list(seqs), list_dir, valid_frac, test_frac, seed)
  return {s: [seqs[k][1] for k in splits[s]] for s in folders.SPLITS}


def _standardise(data: Dict[str, List[np.ndarray]], kind: str, min_std: float
                 ) -> Tuple[Dict[str, List[np.ndarray]], ArrayStats]:
  """(data as the model sees them, their stats) for kind 'auto', 'binary' or 'real'."""
  dim = data['train'][0].shape[1]
  non_binary = [(s, i) for s in folders.SPLITS for i, x in enumerate(data[s])
                if not ((x == 0) | (x == 1)).all()]
  if kind == 'binary' and non_binary:
    split, i = non_binary[0]
    raise errors.UserError(f"kind='binary', but {split} sequence {i} holds values other "
                           'than 0 and 1')
  if kind == 'binary' or (kind == 'auto' and not non_binary):
    return data, ArrayStats('binary', np.zeros(dim, np.float32), np.ones(dim, np.float32),
                            dim)
  train = np.concatenate(data['train']).astype(np.float64)  # [sum T, D]
  mean, std = train.mean(0), train.std(0)  # [D], [D]
  std = np.where(std > min_std, std, 1.0)
  stats = ArrayStats('real', mean.astype(np.float32), std.astype(np.float32), dim)
  return {s: [apply_stats(x, stats, s) for x in data[s]] for s in folders.SPLITS}, stats


def apply_stats(x: np.ndarray, stats: ArrayStats, name: str) -> np.ndarray:
  """Raw [T, D] values -> the model's: standardised with the train split's stats (real
  data); UserError naming `name` when D differs or binary data hold other values."""
  if x.shape[1] != stats.dim:
    raise errors.UserError(f'{name}: D={x.shape[1]} values per step; the training data '
                           f'have D={stats.dim}')
  if stats.kind == 'binary':
    if not ((x == 0) | (x == 1)).all():
      raise errors.UserError(f'{name}: values other than 0 and 1; the training data are '
                             'binary')
    return x.astype(np.float32)
  return ((np.asarray(x, np.float64) - stats.mean) / stats.std).astype(np.float32)


def read_sequences(path: str) -> List[Tuple[str, np.ndarray]]:
  """[(name, raw float32 [T, D])] of the .npy/.npz file at path, or of every one under
  the directory path (sorted by key); name is the file (and array) it came from."""
  files = _data_files(path)
  return [seq for key, file in files.items() for seq in _file_sequences(file, key).values()]


def _data_files(path: str) -> Dict[str, str]:
  """{key: file} of the .npy/.npz files under the directory path, or of the file path."""
  if os.path.isdir(path):
    files = folders.find_files(path, EXTS)
  elif os.path.isfile(path) and path.lower().endswith(EXTS):
    files = {os.path.splitext(os.path.basename(path))[0]: path}
  else:
    raise errors.UserError(f'{path}: neither a directory nor an .npy/.npz file')
  if not files:
    raise errors.UserError(f'{path}: no .npy/.npz files in it or below')
  return files


def load_array_folder(path: str, kind: str = 'auto', valid_frac: float = 0.1,
                      test_frac: float = 0.1, seed: int = 1234,
                      list_dir: Optional[str] = None, min_std: float = 1e-6
                      ) -> Tuple[Dict[str, List[np.ndarray]], ArrayStats]:
  """({'train', 'valid', 'test'}: float32 [T_i, D] sequences, ArrayStats) of the
  sequences at path (module docstring). list_dir defaults to path when it is a
  directory. Every problem with the data is a UserError naming the file."""
  if kind not in KINDS:
    raise ValueError(f'kind={kind!r}: choose one of {KINDS}')
  files = _data_files(path)
  if os.path.isdir(path):
    list_dir = list_dir or path
  split_files = [p for p in files.values() if _is_split_file(p)]
  if split_files and len(files) > 1:
    raise errors.UserError(f'{split_files[0]} holds a train/valid/test split, so it must '
                           f'be the only data file under {path} ({len(files)} found)')
  if split_files:
    data = _split_file(split_files[0])
  else:
    data = _folder_split(files, list_dir, valid_frac, test_frac, seed)
  folders.check_splits(data, path)
  return _standardise(data, kind, min_std)
