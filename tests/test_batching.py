"""reexam_jax.data.batching against the reference loaders of spec §8.5 / §5.2."""
import numpy as np
import pytest

from reexam_jax.data import batching


def _ref_train_chunks(seqs, order, batch_size, d_data, tgt_len):
  """Spec §8.5: concatenate in `order`, truncate to a multiple of B*D, reshape [B, n, D],
  transpose to [n, B, D], and yield x = S[k:k+L], y = S[k+1:k+L+1] for k < n - 1."""
  flat = np.concatenate([np.asarray(seqs[i], np.float32).ravel() for i in order])
  n_step = flat.size // (batch_size * d_data)
  stream = flat[:n_step * batch_size * d_data].reshape(batch_size, n_step, d_data)
  stream = np.transpose(stream, (1, 0, 2))
  chunks = []
  k = 0
  while k < n_step - 1:
    length = min(tgt_len, n_step - 1 - k)
    chunks.append((stream[k:k + length], stream[k + 1:k + length + 1]))
    k += tgt_len
  return stream, chunks


def _tagged_seqs(lengths, d_data):
  """Sequences [T_i, D] whose values 1000 (i + 1) + 10 t + d identify (sequence i,
  step t, element d); all nonzero, so padding (0) is distinguishable."""
  return [(1000 * (i + 1) + 10 * np.arange(t)[:, None] + np.arange(d_data)[None, :]
           ).astype(np.float32) for i, t in enumerate(lengths)]


@pytest.mark.parametrize('batch_size,d_data,tgt_len', [(3, 2, 4), (4, 1, 7), (2, 5, 3),
                                                       (5, 3, 100)])
def test_train_stream_matches_reference(batch_size, d_data, tgt_len):
  lengths = [11, 5, 23, 8, 17, 2, 30]
  seqs = _tagged_seqs(lengths, d_data)
  stream = batching.TrainStream(seqs, batch_size, d_data, tgt_len, seed=3)
  for epoch in range(2):
    # The documented shuffle contract: np.random.default_rng([seed, epoch]).permutation.
    order = np.random.default_rng([3, epoch]).permutation(len(seqs))
    ref_stream, ref_chunks = _ref_train_chunks(seqs, order, batch_size, d_data, tgt_len)
    assert stream.num_rows == ref_stream.shape[0]
    assert stream.chunks_per_epoch == len(ref_chunks)
    np.testing.assert_array_equal(stream.epoch_stream(epoch), ref_stream)
    for c, (ref_x, ref_y) in enumerate(ref_chunks):
      x, y = stream.batch(epoch * stream.chunks_per_epoch + c)
      assert x.shape == ref_x.shape and y.shape == ref_y.shape
      assert x.dtype == np.float32
      np.testing.assert_array_equal(x, ref_x)
      np.testing.assert_array_equal(y, ref_y)


def test_train_stream_structure_is_independent_of_rng_contract():
  """Without assuming how the permutation is drawn: each row of the stream is a contiguous
  segment of a concatenation of all sequences, each used exactly once, in some order;
  chunks tile the stream with the one-step shift, the last chunk being shorter."""
  d_data, batch_size, tgt_len = 2, 3, 4
  lengths = [6, 9, 4, 12, 7]
  seqs = _tagged_seqs(lengths, d_data)
  stream = batching.TrainStream(seqs, batch_size, d_data, tgt_len, seed=11)
  s = stream.epoch_stream(0)
  total = sum(lengths) * d_data
  n_step = total // (batch_size * d_data)
  assert s.shape == (n_step, batch_size, d_data)
  # Reassemble the concatenated stream: row b holds elements [b*n*D, (b+1)*n*D).
  flat = s.transpose(1, 0, 2).ravel()
  seq_ids = (flat // 1000).astype(int) - 1
  # Which sequence comes first, second, ...: runs of equal ids.
  run_starts = np.flatnonzero(np.diff(seq_ids)) + 1
  run_ids = seq_ids[np.concatenate([[0], run_starts])]
  assert len(set(run_ids)) == len(run_ids)  # every sequence appears in one contiguous run
  expected = np.concatenate([seqs[i].ravel() for i in
                             list(run_ids) + [i for i in range(len(seqs)) if i not in run_ids]])
  np.testing.assert_array_equal(flat, expected[:flat.size])
  assert flat.size == n_step * batch_size * d_data
  # Chunks: x concatenated over time = S[:-1], y = S[1:], lengths L, ..., L, rest.
  xs, ys = zip(*[stream.batch(c) for c in range(stream.chunks_per_epoch)])
  np.testing.assert_array_equal(np.concatenate(xs), s[:-1])
  np.testing.assert_array_equal(np.concatenate(ys), s[1:])
  sizes = [len(x) for x in xs]
  assert sizes[:-1] == [tgt_len] * (len(sizes) - 1)
  assert sizes[-1] == (n_step - 1) - tgt_len * (len(sizes) - 1)
  assert 0 < sizes[-1] < tgt_len  # this configuration has a shorter last chunk
  # The next step starts the next epoch.
  x_next, _ = stream.batch(stream.chunks_per_epoch)
  np.testing.assert_array_equal(x_next, stream.epoch_stream(1)[:tgt_len])


def test_train_stream_flat_midi_layout():
  """A [T, 88] piano roll with d_data = 1 is read row-major, note after note."""
  rolls = [np.arange(88 * t, dtype=np.float32).reshape(t, 88) + 10000 * i
           for i, t in enumerate([3, 5])]
  stream = batching.TrainStream(rolls, 2, 1, 50, seed=0)
  order = np.random.default_rng([0, 0]).permutation(2)
  flat = np.concatenate([rolls[i].ravel() for i in order])
  n = flat.size // 2
  np.testing.assert_array_equal(stream.epoch_stream(0)[:, :, 0], flat[:2 * n].reshape(2, n).T)


def test_train_stream_restart_is_deterministic():
  seqs = [np.random.default_rng(i).standard_normal((t, 3)).astype(np.float32)
          for i, t in enumerate([13, 7, 21, 9, 4, 16])]
  a = batching.TrainStream(seqs, 2, 3, 5, seed=42)
  n_steps = 3 * a.chunks_per_epoch + 2
  original = [a.batch(t) for t in range(n_steps)]
  # A fresh object (a restarted run), visited out of order.
  b = batching.TrainStream(seqs, 2, 3, 5, seed=42)
  for t in [n_steps - 1, 0, a.chunks_per_epoch + 1, 2, a.chunks_per_epoch]:
    for got, ref in zip(b.batch(t), original[t]):
      np.testing.assert_array_equal(got, ref)
  start = a.chunks_per_epoch - 1
  assert a.position(start) == (0, a.chunks_per_epoch - 1)
  assert a.position(2 * a.chunks_per_epoch + 1) == (2, 1)
  # Epochs are reshuffled, and the seed matters.
  assert not np.array_equal(a.epoch_stream(0), a.epoch_stream(1))
  c = batching.TrainStream(seqs, 2, 3, 5, seed=43)
  assert not all(np.array_equal(c.epoch_stream(e), a.epoch_stream(e)) for e in range(3))


def test_train_stream_too_little_data():
  with pytest.raises(ValueError):
    batching.TrainStream([np.zeros((3, 2), np.float32)], 2, 2, 10)  # 1 step per row


# ----------------------------------------------------------------------------------------
# Evaluation chunks.
# ----------------------------------------------------------------------------------------
def _ref_eval_chunks(seqs, batch_size, d_data, tgt_len, sort):
  """Spec §5.2/§8.5: sort by length, batch, pad, mask; chunks with the one-step shift; the
  mask of a chunk is the mask of its targets. Each chunk padded to [L, B]."""
  steps = []
  for s in seqs:
    flat = np.asarray(s, np.float32).ravel()
    steps.append(flat[:flat.size // d_data * d_data].reshape(-1, d_data))
  order = np.argsort([len(s) for s in steps], kind='stable') if sort else np.arange(len(seqs))
  out = []
  for g in range(0, len(order), batch_size):
    group = [steps[i] for i in order[g:g + batch_size]]
    t_max = max(len(s) for s in group)
    pad = np.zeros((t_max, batch_size, d_data), np.float32)
    mask = np.zeros((t_max, batch_size), np.float32)
    for b, s in enumerate(group):
      pad[:len(s), b], mask[:len(s), b] = s, 1
    for k in range(0, t_max - 1, tgt_len):
      x, y = pad[k:k + tgt_len], pad[k + 1:k + tgt_len + 1]
      m = mask[k + 1:k + tgt_len + 1]
      n = len(y)
      x = x[:n]
      padded = [np.zeros((tgt_len,) + a.shape[1:], np.float32) for a in (x, y, m)]
      for dst, src in zip(padded, (x, y, m)):
        dst[:n] = src
      out.append(tuple(padded))
  return out


@pytest.mark.parametrize('sort', [True, False])
@pytest.mark.parametrize('batch_size,d_data,tgt_len', [(2, 3, 4), (3, 1, 5), (4, 2, 50)])
def test_eval_chunks_match_reference(sort, batch_size, d_data, tgt_len):
  lengths = [9, 3, 14, 1, 6, 11, 2]  # distinct: the sort order is unambiguous
  seqs = _tagged_seqs(lengths, d_data)
  got = list(batching.eval_chunks(seqs, batch_size, d_data, tgt_len, sort=sort))
  ref = _ref_eval_chunks(seqs, batch_size, d_data, tgt_len, sort)
  assert len(got) == len(ref)
  for chunk, (x, y, m) in zip(got, ref):
    np.testing.assert_array_equal(chunk.x, x)
    np.testing.assert_array_equal(chunk.y, y)
    np.testing.assert_array_equal(chunk.mask, m)


@pytest.mark.parametrize('batch_size,d_data,tgt_len', [(2, 3, 4), (3, 1, 5), (4, 2, 2),
                                                       (8, 2, 7)])
def test_eval_chunks_score_every_target_once(batch_size, d_data, tgt_len):
  """Shapes fixed at [L, B]; each real step t >= 1 of every sequence is a masked target in
  exactly one chunk, with x = the step before it; step 0 and padding are never scored."""
  lengths = [9, 3, 14, 1, 6, 11, 2, 6, 6, 20]  # with ties and a 1-step sequence
  seqs = _tagged_seqs(lengths, d_data)
  chunks = list(batching.eval_chunks(seqs, batch_size, d_data, tgt_len))
  scored = []
  for ch in chunks:
    assert ch.x.shape == ch.y.shape == (tgt_len, batch_size, d_data)
    assert ch.mask.shape == (tgt_len, batch_size)
    assert ch.x.dtype == ch.y.dtype == ch.mask.dtype == np.float32
    assert set(np.unique(ch.mask)) <= {0.0, 1.0}
    m = ch.mask.astype(bool)
    y, x = ch.y[m], ch.x[m]  # [n, D]
    seq_id = y[:, 0] // 1000 - 1
    step = (y[:, 0] % 1000) // 10
    np.testing.assert_array_equal(x, y - 10)  # x is the previous step of the same sequence
    # Every element of a scored step is the real data.
    np.testing.assert_array_equal(y - y[:, :1], np.broadcast_to(np.arange(d_data), y.shape))
    scored += list(zip(seq_id.astype(int).tolist(), step.astype(int).tolist()))
    # Unmasked targets are padding (zeros) or do not exist.
    assert np.all(ch.y[~m] == 0)
  expected = [(i, t) for i, n in enumerate(lengths) for t in range(1, n)]
  assert sorted(scored) == sorted(expected)
  assert sum(float(ch.mask.sum()) for ch in chunks) == sum(n - 1 for n in lengths)


def test_eval_chunks_sorted_batches_and_counts():
  lengths = [9, 3, 14, 6, 11, 2, 7]
  seqs = _tagged_seqs(lengths, 1)
  batch_size, tgt_len = 3, 4
  chunks = list(batching.eval_chunks(seqs, batch_size, 1, tgt_len))
  # Batches: sorted lengths [2, 3, 6], [7, 9, 11], [14] -> ceil((t_max-1)/L) chunks each.
  per_batch = [-(-(t_max - 1) // tgt_len) for t_max in (6, 11, 14)]
  assert len(chunks) == sum(per_batch)
  first = chunks[0]
  ids = (first.y[0, :, 0] // 1000 - 1).astype(int)
  np.testing.assert_array_equal(ids, [5, 1, 3])  # lengths 2, 3, 6
  # Last batch holds one sequence: the other columns are all masked out.
  last_batch = chunks[-per_batch[-1]:]
  for ch in last_batch:
    assert np.all(ch.mask[:, 1:] == 0) and np.all(ch.x[:, 1:] == 0)
  # Trailing padded rows of a batch's last chunk: (14 - 1) = 13 = 3*4 + 1 -> 1 real row.
  np.testing.assert_array_equal(chunks[-1].mask[1:], 0)
  assert chunks[-1].mask[0, 0] == 1


def test_eval_chunks_flattening_truncates_partial_step():
  """A 1-D sequence is cut into [len // D, D] steps; the trailing partial step is dropped."""
  seq = np.arange(1, 12, dtype=np.float32)  # 11 elements, D = 3 -> 3 steps
  (chunk,) = batching.eval_chunks([seq], 1, 3, 10)
  np.testing.assert_array_equal(chunk.x[:2, 0], [[1, 2, 3], [4, 5, 6]])
  np.testing.assert_array_equal(chunk.y[:2, 0], [[4, 5, 6], [7, 8, 9]])
  np.testing.assert_array_equal(chunk.mask[:, 0], [1, 1] + [0] * 8)
  np.testing.assert_array_equal(batching.as_steps(seq, 3), seq[:9].reshape(3, 3))
  np.testing.assert_array_equal(batching.as_steps(np.ones((4, 88)), 1).shape, (352, 1))


def test_eval_chunks_single_step_sequences_yield_nothing():
  assert list(batching.eval_chunks([np.ones((1, 2), np.float32)] * 3, 2, 2, 5)) == []
