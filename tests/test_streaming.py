"""Streaming file datasets (spec §8.5 `UnorderedSeqFileData`): FileStream against a
direct port of the reference's buffered loader, resumption, bounded memory, lazy
evaluation, and the lazy speech splits of load_dataset."""
import json
import os

import numpy as np
import pytest
import soundfile
import tensorflow_datasets as tfds

from reexam_jax import experiments
from reexam_jax.data import batching, load_dataset, speech

tfds.disable_progress_bar()


def _tagged(lengths, d_data=1):
  """Sequences [T_i, D] whose values identify (sequence i, step t, element d)."""
  return [(1000 * (i + 1) + 10 * np.arange(t)[:, None] + np.arange(d_data)[None, :]
           ).astype(np.float32) for i, t in enumerate(lengths)]


class FakeLazy:
  """A lazy split over in-memory arrays that records what is read."""

  def __init__(self, seqs):
    self.seqs, self.reads, self.max_read = seqs, [], 0

  def __len__(self):
    return len(self.seqs)

  def lengths(self):
    return np.array([np.size(s) for s in self.seqs])

  def take(self, indices):
    indices = list(indices)
    self.reads.append(indices)
    self.max_read = max(self.max_read, len(indices))
    return [self.seqs[i] for i in indices]


def _ref_file_chunks(seqs, seed, epoch, bsz, d_data, tgt_len, buffer_files):
  """The reference's get_concat_iter for file data: shuffle, buffers of files,
  concatenate, truncate to B*D, [B, n, D] -> [n, B, D], chunks; remainder dropped."""
  order = np.random.default_rng([seed, epoch]).permutation(len(seqs))
  out = []
  for i in range(0, len(order), buffer_files):
    flat = np.concatenate([np.asarray(seqs[j], np.float32).ravel()
                           for j in order[i:i + buffer_files]])
    n_step = flat.size // (bsz * d_data)
    stream = flat[:n_step * bsz * d_data].reshape(bsz, n_step, d_data).transpose(1, 0, 2)
    for k in range(0, n_step - 1, tgt_len):
      length = min(tgt_len, n_step - 1 - k)
      out.append((stream[k:k + length], stream[k + 1:k + length + 1]))
  return out


@pytest.mark.parametrize('bsz,d_data,tgt_len,buffer_files', [
    (2, 3, 4, 3), (3, 1, 7, 2), (4, 2, 3, 5), (2, 5, 100, 4), (3, 2, 2, 1)])
def test_file_stream_matches_reference(bsz, d_data, tgt_len, buffer_files):
  lengths = [11, 5, 23, 8, 17, 2, 30, 1, 14, 9, 26]
  seqs = _tagged(lengths, d_data)
  stream = batching.FileStream(FakeLazy(seqs), bsz, d_data, tgt_len, seed=5,
                               buffer_files=buffer_files)
  step = 0
  for epoch in range(3):
    ref = _ref_file_chunks(seqs, 5, epoch, bsz, d_data, tgt_len, buffer_files)
    assert stream.chunks_in_epoch(epoch) == len(ref)
    for c, (ref_x, ref_y) in enumerate(ref):
      assert stream.position(step) == (epoch, c)
      x, y = stream.batch(step)
      assert x.dtype == np.float32 and x.shape == ref_x.shape
      np.testing.assert_array_equal(x, ref_x)
      np.testing.assert_array_equal(y, ref_y)
      step += 1


def test_file_stream_one_buffer_equals_train_stream():
  seqs = _tagged([11, 5, 23, 8, 17, 2, 30], 2)
  whole = batching.TrainStream(seqs, 3, 2, 4, seed=9)
  files = batching.FileStream(seqs, 3, 2, 4, seed=9, buffer_files=len(seqs))
  for step in range(3 * whole.chunks_per_epoch + 1):
    assert files.position(step) == whole.position(step)
    for a, b in zip(files.batch(step), whole.batch(step)):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('full_chunks', [False, True])
def test_file_stream_resumes_anywhere_and_holds_one_buffer(full_chunks):
  seqs = _tagged(np.random.default_rng(0).integers(1, 40, size=37), 2)
  lazy = FakeLazy(seqs)
  stream = batching.FileStream(lazy, 3, 2, 3, seed=1, buffer_files=4,
                               full_chunks=full_chunks)
  run = [stream.batch(s) for s in range(200)]
  assert lazy.max_read <= 4  # never more than one buffer of files read at once
  assert len(lazy.reads) < 100  # a buffer is read once for all its chunks
  for start in (0, 1, 57, 123, 199):  # a fresh stream (restart) from any step
    fresh = batching.FileStream(FakeLazy(seqs), 3, 2, 3, seed=1, buffer_files=4,
                                full_chunks=full_chunks)
    for s in range(start, min(start + 5, 200)):
      for a, b in zip(fresh.batch(s), run[s]):
        np.testing.assert_array_equal(a, b)
  epochs = [stream.position(s)[0] for s in range(200)]
  assert epochs == sorted(epochs) and epochs[-1] >= 2  # several epochs, in order


@pytest.mark.parametrize('bsz,d_data,tgt_len,buffer_files', [
    (2, 3, 4, 3), (3, 1, 7, 2), (4, 2, 3, 5), (2, 2, 5, 1), (3, 2, 2, 1)])
def test_file_stream_full_chunks_carry_the_remainder(bsz, d_data, tgt_len, buffer_files):
  """Every chunk has tgt_len steps; the buffers' streams, read back row-major, tile the
  epoch's concatenation in order (nothing dropped but the epoch's end)."""
  lengths = [11, 5, 23, 8, 17, 2, 30, 1, 14, 9, 26]
  seqs = _tagged(lengths, d_data)
  stream = batching.FileStream(FakeLazy(seqs), bsz, d_data, tgt_len, seed=4,
                               buffer_files=buffer_files, full_chunks=True)
  step = 0
  for epoch in range(3):
    plan = stream.plan(epoch)
    order = np.random.default_rng([4, epoch]).permutation(len(seqs))
    concat = np.concatenate([seqs[i].ravel() for i in order])
    used = []
    for b, rows in enumerate(plan.rows):
      if rows:
        s = stream.buffer_stream(epoch, b)
        assert (rows - 1) % tgt_len == 0 and s.shape == (rows, bsz, d_data)
        used.append(s.transpose(1, 0, 2).reshape(-1))
    used = np.concatenate(used) if used else np.zeros(0, np.float32)
    np.testing.assert_array_equal(used, concat[:used.size])
    assert concat.size - used.size < (tgt_len + 1) * bsz * d_data
    for _ in range(stream.chunks_in_epoch(epoch)):
      x, y = stream.batch(step)
      assert x.shape == y.shape == (tgt_len, bsz, d_data)
      np.testing.assert_array_equal(x[1:], y[:-1])
      step += 1
    assert stream.position(step) == (epoch + 1, 0)


def test_file_stream_full_chunks_one_buffer():
  """One buffer: the epoch stream cut at k*tgt_len + 1 rows, the epoch's end dropped."""
  seqs = _tagged([11, 5, 23, 8, 17, 2, 30], 2)
  whole = batching.TrainStream(seqs, 3, 2, 4, seed=9)
  files = batching.FileStream(seqs, 3, 2, 4, seed=9, buffer_files=7, full_chunks=True)
  k = (whole.num_rows - 1) // 4
  assert files.chunks_in_epoch(0) == k and files.plan(0).rows[0] == 4 * k + 1
  order = np.random.default_rng([9, 0]).permutation(len(seqs))
  concat = np.concatenate([seqs[i].ravel() for i in order])
  ref = concat[:(4 * k + 1) * 3 * 2].reshape(3, 4 * k + 1, 2).transpose(1, 0, 2)
  for c in range(k):
    x, y = files.batch(c)
    np.testing.assert_array_equal(x, ref[4 * c:4 * c + 4])
    np.testing.assert_array_equal(y, ref[4 * c + 1:4 * c + 5])


def test_file_stream_too_little_data():
  with pytest.raises(ValueError, match='raise buffer_files'):
    batching.FileStream(_tagged([3, 3, 3]), 4, 1, 5, buffer_files=1)


def test_make_train_stream_dispatch():
  seqs = _tagged([30, 40, 50])
  assert isinstance(batching.make_train_stream(seqs, 2, 1, 5), batching.TrainStream)
  assert isinstance(batching.make_train_stream(FakeLazy(seqs), 2, 1, 5), batching.FileStream)
  lazy_stream = batching.make_train_stream(FakeLazy(seqs), 2, 1, 5)
  assert lazy_stream.buffer_files == 2 and lazy_stream.full_chunks  # bsz files, jit-friendly
  assert isinstance(batching.make_train_stream(seqs, 2, 1, 5, buffer_files=2),
                    batching.FileStream)


def _chunks_equal(a, b):
  a, b = list(a), list(b)
  assert len(a) == len(b)
  for ca, cb in zip(a, b):
    np.testing.assert_array_equal(ca.x, cb.x)
    np.testing.assert_array_equal(ca.y, cb.y)
    np.testing.assert_array_equal(ca.mask, cb.mask)


@pytest.mark.parametrize('sort', [True, False])
@pytest.mark.parametrize('bsz,d_data,tgt_len', [(3, 2, 4), (2, 1, 7), (4, 3, 2)])
def test_lazy_eval_chunks_equal_list(sort, bsz, d_data, tgt_len):
  lengths = [11, 5, 23, 8, 17, 2, 30, 1, 14, 9, 26, 8]
  seqs = [s.ravel() for s in _tagged(lengths, d_data)]  # 1-D like speech
  lazy = FakeLazy(seqs)
  _chunks_equal(batching.eval_chunks(lazy, bsz, d_data, tgt_len, sort),
                batching.eval_chunks(seqs, bsz, d_data, tgt_len, sort))
  assert lazy.max_read <= bsz  # one evaluation batch in memory at a time
  if not sort:
    assert sum(lazy.reads, []) == list(range(len(seqs)))  # list order, group by group
  want = batching.eval_subset(seqs, 5, d_data, sort)
  got = batching.eval_subset(FakeLazy(seqs), 5, d_data, sort)
  assert [len(s) for s in got] == [len(s) for s in want]
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- lazy speech splits

def _wav_folder(root, n=12, rate=8000, seed=0):
  rng = np.random.default_rng(seed)
  os.makedirs(root, exist_ok=True)
  for i in range(n):
    pcm = (rng.integers(-3000, 3000, int(rng.integers(300, 1500))) + 400).astype(np.int16)
    soundfile.write(os.path.join(root, f'utt{i:02d}.wav'), pcm, rate, subtype='PCM_16')
  return root


def test_speech_split_lengths_take_and_index(tmp_path):
  src = _wav_folder(str(tmp_path / 'src'), n=20)
  data = speech.open_speech('wav_folder', str(tmp_path / 'prep'), manual_dir=src,
                            valid_frac=0.2, test_frac=0.2)
  loaded = speech.load_speech('wav_folder', str(tmp_path / 'prep'), manual_dir=src,
                              valid_frac=0.2, test_frac=0.2)
  for split in ('train', 'valid', 'test'):
    lazy = getattr(data, split)
    assert batching.is_lazy(lazy)
    np.testing.assert_array_equal(lazy.lengths(), [len(s) for s in loaded[split]])
    idx = [len(lazy) - 1, 0, 2]
    for a, b in zip(lazy.take(idx), [loaded[split][i] for i in idx]):
      np.testing.assert_array_equal(a, b)
  index = json.loads(open(os.path.join(data.path, speech.LENGTHS_FILE)).read())
  assert set(index) == {'train', 'valid', 'test'}
  for stride, mode in ((3, 'all_phases'), (3, 'single_phase'), (7, 'all_phases')):
    strided = speech.open_speech('wav_folder', str(tmp_path / 'prep'), manual_dir=src,
                                 valid_frac=0.2, test_frac=0.2, stride=stride,
                                 stride_mode=mode).train
    assert list(strided.lengths()) == [len(s) for s in strided.take(range(len(strided)))]


def test_streamed_training_and_eval_on_a_lazy_speech_split(tmp_path):
  src = _wav_folder(str(tmp_path / 'src'), n=30)
  data = speech.open_speech('wav_folder', str(tmp_path / 'prep'), manual_dir=src)
  seqs, _ = data.train.load()
  lazy_stream = batching.make_train_stream(data.train, 2, 5, 6, seed=3)
  list_stream = batching.FileStream(seqs, 2, 5, 6, seed=3, buffer_files=2, full_chunks=True)
  for step in range(40):
    for a, b in zip(lazy_stream.batch(step), list_stream.batch(step)):
      np.testing.assert_array_equal(a, b)
  _chunks_equal(batching.eval_chunks(data.train, 4, 5, 6, sort=False),
                batching.eval_chunks(seqs, 4, 5, 6, sort=False))


def _config(dataset='wav_folder', **fields):
  config = experiments.get_config(dataset, 'f_rnn')
  config.update(fields)
  return config


def test_load_dataset_lazy_and_prepared_dir(tmp_path):
  src = _wav_folder(str(tmp_path / 'src'), n=40)
  prep = str(tmp_path / 'prep')
  eager = load_dataset(_config(data_dir=src, prepared_dir=prep))
  assert isinstance(eager['train'], list) and eager['sort_eval'] is False
  assert not os.path.exists(os.path.join(src, 'wav_folder'))  # nothing next to the wavs
  lazy = load_dataset(_config(data_dir=src, prepared_dir=prep, stream_from_disk=True))
  assert batching.is_lazy(lazy['train']) and lazy['counts'] == eager['counts']
  assert lazy['path'] == eager['path']  # the same prepared dataset
  sub = load_dataset(_config(data_dir=src, prepared_dir=prep, max_files=30))
  assert sum(sub['counts'].values()) == 30


def test_read_only_corpus_is_prepared_in_the_cache(tmp_path, monkeypatch):
  src = _wav_folder(str(tmp_path / 'src'), n=20)
  monkeypatch.setenv('REEXAM_DATA_DIR', str(tmp_path / 'cache'))
  monkeypatch.setattr(speech, '_writable', lambda path: False)
  data = speech.open_speech('wav_folder', src)
  assert data.path.startswith(str(tmp_path / 'cache' / 'prepared'))
  assert not os.path.exists(os.path.join(src, 'wav_folder'))


def test_vctk_and_blizzard_load_lazily(tmp_path):
  root = str(tmp_path / 'blizzard')
  _wav_folder(root, n=40, rate=16000)
  data = load_dataset(_config(dataset='blizzard', data_dir=root,
                              prepared_dir=str(tmp_path / 'prep')))
  for split in ('train', 'valid', 'test'):
    assert batching.is_lazy(data[split]) and len(data[split]) > 0
  assert data['sort_eval'] is False
  stream = batching.make_train_stream(data['train'], 2, 10, 5, seed=1)
  assert isinstance(stream, batching.FileStream) and stream.batch(0)[0].shape[1:] == (2, 10)


# ----------------------------------------------------------------------------------
# Row blocks: each process of a multi-process run builds only its rows of a batch.

def _blocks(batch_size, num_processes):
  rows = batch_size // num_processes
  return [(i * rows, (i + 1) * rows) for i in range(num_processes)]


def _assert_blocks_make_the_batch(make, batch_size, num_processes, steps):
  """make(rows) -> a stream; the blocks' batches side by side equal the whole batch."""
  whole, parts = make(None), [make(r) for r in _blocks(batch_size, num_processes)]
  for step in steps:
    for got, want in zip(zip(*[p.batch(step) for p in parts]), whole.batch(step)):
      np.testing.assert_array_equal(np.concatenate(got, axis=1), want)


@pytest.mark.parametrize('num_processes', [2, 4])
def test_train_stream_row_blocks(num_processes):
  seqs = _tagged([11, 5, 23, 8, 17, 2, 30, 9], 2)
  make = lambda rows: batching.TrainStream(seqs, 4, 2, 3, seed=3, rows=rows)
  _assert_blocks_make_the_batch(make, 4, num_processes, range(3 * make(None).chunks_per_epoch))


@pytest.mark.parametrize('full_chunks', [False, True])
@pytest.mark.parametrize('num_processes', [2, 4])
def test_file_stream_row_blocks(full_chunks, num_processes):
  seqs = _tagged(np.random.default_rng(1).integers(1, 40, size=37), 2)
  make = lambda rows: batching.FileStream(FakeLazy(seqs), 4, 2, 3, seed=2, buffer_files=6,
                                          full_chunks=full_chunks, rows=rows)
  _assert_blocks_make_the_batch(make, 4, num_processes, list(range(120)) + [7, 3, 90])


@pytest.mark.parametrize('full_chunks', [False, True])
def test_file_stream_row_block_reads_only_its_files(full_chunks):
  # 8 files of 12 elements a buffer, 4 rows: each row is 2 files' worth of the stream.
  seqs = _tagged([12] * 40, 1)
  lazy = FakeLazy(seqs)
  stream = batching.FileStream(lazy, 4, 1, 5, seed=0, buffer_files=8,
                               full_chunks=full_chunks, rows=(1, 2))
  for step in range(3 * stream.chunks_in_epoch(0)):
    stream.batch(step)
  # Its own 2 files; with full_chunks a row's 21 steps can straddle a third.
  assert 2 <= lazy.max_read <= (3 if full_chunks else 2)


@pytest.mark.parametrize('num_processes', [2, 4])
def test_padded_stream_row_blocks(num_processes):
  seqs = _tagged([11, 5, 23, 8, 17, 2, 30, 9, 4, 13], 3)  # 10 = 2 batches of 4 + 2
  make = lambda rows: batching.PaddedStream(seqs, 4, 3, pad_multiple=4, seed=1, rows=rows)
  _assert_blocks_make_the_batch(make, 4, num_processes, range(9))


@pytest.mark.parametrize('tgt_len', [0, 4])
def test_eval_chunk_row_blocks_read_only_their_sequences(tgt_len):
  seqs = _tagged([11, 5, 23, 8, 17, 2, 30, 9, 4, 13], 2)
  whole = list(batching.eval_chunks(seqs, 4, 2, tgt_len, pad_multiple=3))
  lazies = [FakeLazy(seqs) for _ in range(2)]
  parts = [list(batching.eval_chunks(lazy, 4, 2, tgt_len, pad_multiple=3, rows=r))
           for lazy, r in zip(lazies, _blocks(4, 2))]
  assert len(parts[0]) == len(parts[1]) == len(whole)
  for a, b, want in zip(*parts, whole):
    for field in ('x', 'y', 'mask'):
      np.testing.assert_array_equal(
          np.concatenate([getattr(a, field), getattr(b, field)], axis=1), getattr(want, field))
  assert all(lazy.max_read <= 2 for lazy in lazies)  # 2 of each batch's 4 sequences
