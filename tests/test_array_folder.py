"""Any multivariate sequences in .npy/.npz files (reexam_jax/data/array_folder.py):
layouts, the seeded or listed split, binary vs real data, and one UserError naming the
file for each kind of bad data. Every fixture is written here."""
import os

import numpy as np
import pytest

from reexam_jax import errors
from reexam_jax.data import array_folder, tfds_builders

SPLITS = ('train', 'valid', 'test')


def real_seqs(n, dim=3, seed=0):
  """n float64 [T_i, dim] sequences with mean 5, scale 2 and a constant last dim."""
  rng = np.random.default_rng(seed)
  seqs = [5 + 2 * rng.standard_normal((4 + i, dim)) for i in range(n)]
  for x in seqs:
    x[:, -1] = 7.0
  return seqs


def save_npy(root, seqs, prefix='s'):
  """root/<prefix>NN.npy per sequence; returns {key: sequence}."""
  os.makedirs(root, exist_ok=True)
  for i, x in enumerate(seqs):
    np.save(os.path.join(root, f'{prefix}{i:02d}.npy'), x)
  return {f'{prefix}{i:02d}': x for i, x in enumerate(seqs)}


def test_real_data_are_standardised_with_train_statistics(tmp_path):
  by_key = save_npy(str(tmp_path), real_seqs(10))
  data, stats = array_folder.load_array_folder(str(tmp_path), valid_frac=0.2,
                                               test_frac=0.2, seed=5)
  split = tfds_builders.ratio_split(list(by_key), 0.2, 0.2, 5)
  train = np.concatenate([by_key[k] for k in split['train']])
  assert stats.kind == 'real' and stats.dim == 3
  np.testing.assert_allclose(stats.mean, train.mean(0), rtol=1e-6)
  np.testing.assert_allclose(stats.std[:2], train.std(0)[:2], rtol=1e-6)
  assert stats.std[2] == 1.0  # constant in train: centred, not divided by ~0
  for s in SPLITS:
    assert [len(x) for x in data[s]] == [len(by_key[k]) for k in split[s]]
    for got, key in zip(data[s], split[s]):
      assert got.dtype == np.float32 and got.shape == by_key[key].shape
      np.testing.assert_allclose(got * stats.std + stats.mean, by_key[key], rtol=1e-5)
  standardised = np.concatenate(data['train'])
  np.testing.assert_allclose(standardised.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(standardised.std(0)[:2], 1, rtol=1e-5)


def test_binary_data_stay_binary_unless_told(tmp_path):
  rng = np.random.default_rng(0)
  save_npy(str(tmp_path), [rng.random((6, 88)) < 0.2 for _ in range(10)])  # bool files
  data, stats = array_folder.load_array_folder(str(tmp_path), valid_frac=0.2,
                                               test_frac=0.2)
  assert stats.kind == 'binary' and stats.dim == 88
  np.testing.assert_array_equal(stats.mean, 0)
  np.testing.assert_array_equal(stats.std, 1)
  assert all(set(np.unique(x)) <= {0.0, 1.0} and x.dtype == np.float32
             for s in SPLITS for x in data[s])
  _, stats = array_folder.load_array_folder(str(tmp_path), kind='real', valid_frac=0.2,
                                            test_frac=0.2)
  assert stats.kind == 'real' and (stats.mean > 0).all()


def test_binary_kind_on_real_data_names_the_sequence(tmp_path):
  save_npy(str(tmp_path), real_seqs(10))
  with pytest.raises(errors.UserError, match="kind='binary', but train sequence 0"):
    array_folder.load_array_folder(str(tmp_path), kind='binary', valid_frac=0.2,
                                   test_frac=0.2)
  with pytest.raises(ValueError, match='kind='):
    array_folder.load_array_folder(str(tmp_path), kind='bernoulli')


def test_npz_files_and_subdirectories(tmp_path):
  seqs = real_seqs(6)
  np.savez(tmp_path / 'many.npz', a=seqs[0], b=seqs[1], c=seqs[2])  # three sequences
  np.savez(tmp_path / 'one.npz', seqs[3])  # one array: keyed by the file alone
  save_npy(str(tmp_path / 'sub'), seqs[4:])
  data, _ = array_folder.load_array_folder(str(tmp_path), valid_frac=0.2, test_frac=0.2,
                                           seed=1)
  keys = ['many/a', 'many/b', 'many/c', 'one', 'sub/s00', 'sub/s01']
  split = tfds_builders.ratio_split(keys, 0.2, 0.2, 1)
  lengths = dict(zip(keys, [len(x) for x in seqs]))
  for s in SPLITS:
    assert [len(x) for x in data[s]] == [lengths[k] for k in split[s]]


def test_split_by_list_files(tmp_path):
  seqs = real_seqs(5)
  np.savez(tmp_path / 'many.npz', a=seqs[0], b=seqs[1])
  save_npy(str(tmp_path), seqs[2:])
  (tmp_path / 'train.txt').write_text('s02\nmany/a\ns00\n')
  (tmp_path / 'valid.txt').write_text('many/b\n')
  (tmp_path / 'test.txt').write_text('s01\n')
  data, stats = array_folder.load_array_folder(str(tmp_path))
  train = np.concatenate([seqs[4], seqs[0], seqs[2]])
  np.testing.assert_allclose(stats.mean, train.mean(0), rtol=1e-6)
  assert [len(x) for x in data['train']] == [len(seqs[i]) for i in (4, 0, 2)]
  assert [len(x) for x in data['valid']] == [len(seqs[1])]
  assert [len(x) for x in data['test']] == [len(seqs[3])]
  (tmp_path / 'test.txt').write_text('s07\n')
  with pytest.raises(errors.UserError, match="test.txt: entry 's07' matches no"):
    array_folder.load_array_folder(str(tmp_path))


@pytest.mark.parametrize('ragged', [True, False])
def test_one_npz_with_the_split(tmp_path, ragged):
  seqs = real_seqs(6)
  if not ragged:
    seqs = [x[:4] for x in seqs]  # np.savez stores equal lengths as one [N, T, D] array

  def pack(xs):
    if not ragged:
      return np.stack(xs)
    out = np.empty(len(xs), dtype=object)
    out[:] = xs
    return out
  path = str(tmp_path / 'data.npz')
  np.savez(path, train=pack(seqs[:4]), valid=pack(seqs[4:5]), test=pack(seqs[5:]))
  for source in (path, str(tmp_path)):
    data, stats = array_folder.load_array_folder(source)
    assert [len(data[s]) for s in SPLITS] == [4, 1, 1]
    np.testing.assert_allclose(stats.mean, np.concatenate(seqs[:4]).mean(0), rtol=1e-6)
    np.testing.assert_allclose(data['test'][0] * stats.std + stats.mean, seqs[5],
                               rtol=1e-5)


def test_a_split_file_must_be_alone_and_complete(tmp_path):
  seqs = real_seqs(3)
  np.savez(tmp_path / 'data.npz', train=np.stack([x[:4] for x in seqs]),
           valid=seqs[0], test=seqs[1])
  with pytest.raises(errors.UserError, match=r'data.npz\[valid\]: shape \(4, 3\)'):
    array_folder.load_array_folder(str(tmp_path))
  np.save(tmp_path / 'extra.npy', seqs[2])
  with pytest.raises(errors.UserError, match='data.npz holds a train/valid/test split, so '
                     'it must be the only data file'):
    array_folder.load_array_folder(str(tmp_path))
  np.savez(tmp_path / 'data.npz', train=seqs[0], test=seqs[1])
  with pytest.raises(errors.UserError, match=r"data.npz: arrays \['test', 'train'\]; a "
                     'split file holds exactly'):
    array_folder.load_array_folder(str(tmp_path))


def bad_case(tmp_path, name, value):
  """A folder of 10 good [5, 3] sequences plus `name` holding `value` (an array, or
  bytes for a raw file)."""
  save_npy(str(tmp_path), [np.ones((5, 3)) * i for i in range(10)])
  path = tmp_path / name
  if isinstance(value, bytes):
    path.write_bytes(value)
  elif name.endswith('.npz'):
    np.savez(path, x=value, y=np.ones((5, 3)))
  else:
    np.save(path, value, allow_pickle=True)
  return str(path)


BAD = [
    ('ragged D', 'z.npy', np.ones((5, 4)), r'z.npy: D=4 values per step, but .*s00.npy '
     'has D=3'),
    ('NaN', 'z.npy', np.array([[0, 1, 2], [0, np.nan, 2]]), r'z.npy: NaN or Inf .* at '
     'step 1, dimension 1'),
    ('Inf in an npz', 'z.npz', np.array([[np.inf, 1, 2]]), r'z.npz\[x\]: NaN or Inf'),
    ('beyond float32', 'z.npy', np.array([[1e300, 1, 2]]), 'z.npy: NaN or Inf'),
    ('empty file', 'z.npy', b'', 'z.npy: empty file'),
    ('not numpy', 'z.npy', b'hello', 'z.npy: not a readable .npy/.npz file'),
    ('zero-length', 'z.npy', np.zeros((0, 3)), r'z.npy: empty sequence of shape \(0, 3\)'),
    ('zero-width', 'z.npy', np.zeros((5, 0)), r'z.npy: empty sequence of shape \(5, 0\)'),
    ('1-D', 'z.npy', np.arange(5.0), r'z.npy: 1-D array of shape \(5,\).*reshape it to '
     r'\[T, 1\]'),
    ('3-D', 'z.npy', np.zeros((2, 5, 3)), r'z.npy: shape \(2, 5, 3\); expected a \[T, D\]'),
    ('strings', 'z.npy', np.array([['a', 'b', 'c']]), 'z.npy: dtype <U1; expected numbers'),
    ('complex', 'z.npy', np.ones((5, 3), np.complex64), 'z.npy: dtype complex64'),
    ('object', 'z.npy', np.array([[1, 'a', None]], dtype=object),
     r'z.npy: an object array \(dtype=object\)'),
    ('object in an npz', 'z.npz', np.array([[1, 'a', None]], dtype=object),
     r'z.npz\[x\]: an object array'),
]


@pytest.mark.parametrize('case,name,value,message', BAD, ids=[b[0] for b in BAD])
def test_bad_data_name_the_file(tmp_path, case, name, value, message):
  del case
  bad_case(tmp_path, name, value)
  with pytest.raises(errors.UserError, match=message):
    array_folder.load_array_folder(str(tmp_path), valid_frac=0.2, test_frac=0.2)


def test_empty_npz_duplicate_keys_and_missing_paths(tmp_path):
  np.savez(tmp_path / 'e.npz')
  with pytest.raises(errors.UserError, match='e.npz: holds no arrays'):
    array_folder.load_array_folder(str(tmp_path))
  os.remove(tmp_path / 'e.npz')
  np.save(tmp_path / 'a.npy', np.ones((3, 2)))
  np.savez(tmp_path / 'a.npz', np.ones((3, 2)))
  with pytest.raises(errors.UserError, match='a.npy and .*a.npz have the same name'):
    array_folder.load_array_folder(str(tmp_path))
  os.remove(tmp_path / 'a.npz')
  np.savez(tmp_path / 'b.npz', x=np.ones((3, 2)), y=np.ones((3, 2)))
  (tmp_path / 'b').mkdir()
  np.save(tmp_path / 'b' / 'x.npy', np.ones((3, 2)))
  with pytest.raises(errors.UserError, match=r"x.npy and .*b.npz\[x\] are both sequence "
                     "'b/x'"):
    array_folder.load_array_folder(str(tmp_path))
  with pytest.raises(errors.UserError, match='missing: neither a directory nor'):
    array_folder.load_array_folder(str(tmp_path / 'missing'))
  (tmp_path / 'sub').mkdir()
  with pytest.raises(errors.UserError, match='sub: no .npy/.npz files'):
    array_folder.load_array_folder(str(tmp_path / 'sub'))
  save_npy(str(tmp_path / 'few'), real_seqs(3))
  with pytest.raises(errors.UserError, match='the valid split is empty'):
    array_folder.load_array_folder(str(tmp_path / 'few'))
