"""The reference's batching, shared by every domain (docs/reference.md, "Data pipelines").

Training: each epoch the sequences are shuffled, concatenated into one stream, cut
into `batch_size` contiguous rows and walked in chunks of `tgt_len` steps with the
one-step shift x = S[k:k+L], y = S[k+1:k+L+1]. Sequence boundaries are crossed, no mask.

Evaluation: whole sequences, sorted by length, padded and masked per batch, cut into
chunks that each start from a zero state; the first step of a sequence is never scored.
Every evaluation chunk is padded to [tgt_len, batch_size] (mask 0) so one compiled
function serves all chunks; tgt_len 0 scores every sequence whole (one chunk per batch,
padded to a multiple of pad_multiple steps).

Whole-sequence training (handwriting; `PaddedStream`): each epoch the sequences are
shuffled and taken batch_size at a time, zero-padded to the batch's longest sequence
and masked, x = S[:-1], y = S[1:], mask = mask[1:] (the reference's IAM-OnDB batches).

Sequences are numpy arrays [T_i, D] (or anything whose row-major flattening is the
element stream, e.g. a [T, 88] piano roll read as D = 1).

Rows: in a multi-process run each process builds only its own block [lo, hi) of the
global batch's rows (`rows=(lo, hi)`, reexam_jax.parallel.local_rows), reading only the
sequences (or files) that those rows touch; the blocks of all processes side by side
are the global batch. `rows=None` builds every row.

File datasets (VCTK, Blizzard; the reference's `UnorderedSeqFileData`) are never held in
memory whole: a *lazy split* (e.g. `speech.SpeechSplit`) has `len()`, `lengths()` (the
element count of each sequence, without reading it) and `take(indices)` (the listed
sequences). `FileStream` trains on it one buffer of files at a time, `eval_chunks`
evaluates it one batch of sequences at a time, and `make_train_stream` picks the
stream that fits the data.
"""
import bisect
import dataclasses
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np


def as_steps(seq: np.ndarray, d_data: int) -> np.ndarray:
  """Row-major flattening re-cut into [T, d_data] steps; a trailing partial step is
  dropped (the reference truncates to a multiple of D)."""
  flat = np.asarray(seq, np.float32).reshape(-1)
  n = flat.size // d_data
  return flat[:n * d_data].reshape(n, d_data)


def epoch_order(seed: int, epoch: int, num: int) -> np.ndarray:
  """The training order of `num` sequences (or files) in epoch `epoch`: a permutation
  drawn from `np.random.default_rng([seed, epoch])`, a pure function of both."""
  return np.random.default_rng([seed, epoch]).permutation(num)


RowBlock = Optional[Tuple[int, int]]  # [lo, hi) rows of the global batch; None: all


def row_block(rows: RowBlock, batch_size: int) -> Tuple[int, int]:
  """rows as (lo, hi), None meaning every row; ValueError outside [0, batch_size]."""
  lo, hi = rows if rows is not None else (0, batch_size)
  if not 0 <= lo <= hi <= batch_size:
    raise ValueError(f'rows {rows} are not a block of a batch of {batch_size} rows')
  return lo, hi


def read_span(seqs, sizes: np.ndarray, order: Sequence[int], start: int,
              stop: int) -> np.ndarray:
  """Elements [start, stop) of the concatenated row-major flattenings of seqs[i] for i
  in `order`, reading (`take`) only the sequences that overlap the span. sizes [N]:
  the element count of every sequence (`sequence_lengths`)."""
  order = np.asarray(order, np.int64)
  ends = np.cumsum(sizes[order])  # [len(order)] end of each sequence in the stream
  first = int(np.searchsorted(ends, start, side='right'))
  last = int(np.searchsorted(ends, stop, side='left')) + 1 if stop > start else first
  parts = [np.asarray(s, np.float32).reshape(-1) for s in take(seqs, order[first:last])]
  flat = np.concatenate(parts) if parts else np.zeros(0, np.float32)
  offset = int(ends[first - 1]) if first else 0  # stream position of flat[0]
  return flat[start - offset:stop - offset]


def shifted_chunk(stream: np.ndarray, index: int, tgt_len: int
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """Chunk `index` of a [rows, B, D] stream: x = S[k:k+L], y = S[k+1:k+L+1] with
  k = index * L (the last chunk is shorter)."""
  start = index * tgt_len
  stop = min(start + tgt_len, len(stream) - 1)
  return stream[start:stop], stream[start + 1:stop + 1]


@dataclasses.dataclass
class TrainStream:
  """Chunks of the concatenated, shuffled training stream, resumable at any step.

  The shuffle of epoch e is `epoch_order(seed, e, ...)`, so chunk `step` is a pure
  function of (seed, step): a restarted run sees exactly the batches an uninterrupted
  one would. With `rows`, only that block of batch rows is built.
  """
  seqs: Sequence[np.ndarray]
  batch_size: int
  d_data: int
  tgt_len: int
  seed: int = 0
  rows: RowBlock = None

  def __post_init__(self):
    self.sizes = sequence_lengths(self.seqs)
    total = int(self.sizes.sum())
    self.lo, self.hi = row_block(self.rows, self.batch_size)
    self.num_rows = total // (self.batch_size * self.d_data)  # steps per batch row
    if self.num_rows < 2:
      raise ValueError(f'training data has {total} elements: too few for batch_size '
                       f'{self.batch_size} x d_data {self.d_data} (need 2 steps per row)')
    self.chunks_per_epoch = -(-(self.num_rows - 1) // self.tgt_len)
    self._epoch, self._stream = None, None

  def epoch_stream(self, epoch: int) -> np.ndarray:
    """[num_rows, hi - lo, D] stream of one epoch: batch row b is elements
    [b * num_rows * D, (b + 1) * num_rows * D) of the shuffled concatenation."""
    if epoch != self._epoch:
      order = epoch_order(self.seed, epoch, len(self.seqs))
      per_row = self.num_rows * self.d_data
      flat = read_span(self.seqs, self.sizes, order, self.lo * per_row, self.hi * per_row)
      self._stream = flat.reshape(self.hi - self.lo, self.num_rows, self.d_data)
      self._stream = self._stream.transpose(1, 0, 2)
      self._epoch = epoch
    return self._stream

  def position(self, step: int) -> Tuple[int, int]:
    """(epoch, chunk index) of 0-based training step `step`."""
    return divmod(step, self.chunks_per_epoch)

  def batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y), each [L, hi - lo, D] (the last chunk of an epoch may be shorter)."""
    epoch, chunk = self.position(step)
    return shifted_chunk(self.epoch_stream(epoch), chunk, self.tgt_len)


def padded_length(steps: int, multiple: int) -> int:
  """steps rounded up to a multiple of `multiple` (one compiled shape per bucket)."""
  return -(-steps // multiple) * multiple


def pad_batch(seqs: Sequence[np.ndarray], batch_size: int, d_data: int,
              length: int) -> Tuple[np.ndarray, np.ndarray]:
  """Sequences (at most batch_size, each [T_i, D] at most `length` steps) -> zero-padded
  [length, batch_size, D] and the mask [length, batch_size] of their steps."""
  padded = np.zeros((length, batch_size, d_data), np.float32)
  mask = np.zeros((length, batch_size), np.float32)
  for b, s in enumerate(seqs):
    padded[:len(s), b] = s
    mask[:len(s), b] = 1.0
  return padded, mask


@dataclasses.dataclass
class PaddedStream:
  """Whole-sequence training batches, resumable at any step: (x, y, mask) with x, y
  [L, B, D] and mask [L, B] (1 where y is a real step), L the batch's longest sequence
  less one, rounded up to a multiple of pad_multiple.

  Epoch e takes the sequences in `epoch_order(seed, e, ...)`, batch_size at a time; its
  last batch may hold fewer sequences (its other rows are all padding). Sequences are
  [T_i, ...] arrays read as [T_i, d_data] steps (`as_steps`). With `rows`, only that
  block of batch rows is built (L is still the whole batch's).
  """
  seqs: Sequence[np.ndarray]
  batch_size: int
  d_data: int
  pad_multiple: int = 1
  seed: int = 0
  rows: RowBlock = None

  def __post_init__(self):
    self.steps = sequence_lengths(self.seqs) // self.d_data  # [N] steps of each sequence
    if not (self.steps >= 2).any():
      raise ValueError('training data have no sequence of two or more steps')
    self.lo, self.hi = row_block(self.rows, self.batch_size)
    self.batches_per_epoch = -(-len(self.seqs) // self.batch_size)

  def position(self, step: int) -> Tuple[int, int]:
    """(epoch, batch index) of 0-based training step `step`."""
    return divmod(step, self.batches_per_epoch)

  def batch(self, step: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, mask) of step `step` (see the class docstring)."""
    epoch, index = self.position(step)
    order = epoch_order(self.seed, epoch, len(self.seqs))
    group = order[index * self.batch_size:(index + 1) * self.batch_size]
    t_max = max(int(self.steps[group].max()), 2)
    local = [as_steps(s, self.d_data) for s in take(self.seqs, group[self.lo:self.hi])]
    padded, mask = pad_batch(local, self.hi - self.lo, self.d_data,
                             padded_length(t_max - 1, self.pad_multiple) + 1)
    return padded[:-1], padded[1:], mask[1:]


@dataclasses.dataclass(frozen=True)
class EvalChunk:
  """One evaluation chunk: x, y [L, rows, D] and mask [L, rows] (1 where y is scored)."""
  x: np.ndarray
  y: np.ndarray
  mask: np.ndarray


def eval_chunks(seqs: Sequence[np.ndarray], batch_size: int, d_data: int, tgt_len: int,
                sort: bool = True, pad_multiple: int = 1,
                rows: RowBlock = None) -> Iterator[EvalChunk]:
  """Evaluation chunks over whole sequences, each [tgt_len, batch_size] (padded), or,
  with tgt_len 0, one chunk per batch holding its sequences whole, padded to a multiple
  of pad_multiple steps.

  Sequences are taken in `eval_order` (sorted by length, as for TIMIT and MIDI, or in
  list order, as for the VCTK and Blizzard file lists), batched, zero-padded to the
  batch's longest sequence, and cut into chunks (`batch_chunks`); every chunk is scored
  from a zero state. A lazy split is read one batch of sequences at a time.
  """
  steps = sequence_lengths(seqs) // d_data  # [N] steps of each sequence
  order = eval_order(seqs, d_data, sort)
  for start in range(0, len(order), batch_size):
    group = order[start:start + batch_size]
    yield from batch_chunks(seqs, group, int(steps[group].max()), batch_size, d_data,
                            tgt_len, pad_multiple, rows)


def batch_chunks(seqs, indices: Sequence[int], t_max: int, batch_size: int, d_data: int,
                 tgt_len: int, pad_multiple: int = 1,
                 rows: RowBlock = None) -> Iterator[EvalChunk]:
  """The evaluation chunks of one batch: the sequences seqs[indices] (at most
  batch_size, the longest t_max steps) padded to t_max and cut as `eval_chunks` says.
  With `rows`, the chunks hold only that block of the batch's rows and only those
  sequences are read; their count and length are the whole batch's."""
  lo, hi = row_block(rows, batch_size)
  local = [as_steps(s, d_data) for s in take(seqs, indices[lo:hi])]
  padded, mask = pad_batch(local, hi - lo, d_data, t_max)
  length = tgt_len or padded_length(t_max - 1, pad_multiple)
  for k in range(0, t_max - 1, length):
    n = min(length, t_max - 1 - k)
    x = np.zeros((length, hi - lo, d_data), np.float32)
    y = np.zeros_like(x)
    m = np.zeros((length, hi - lo), np.float32)
    x[:n], y[:n], m[:n] = padded[k:k + n], padded[k + 1:k + n + 1], mask[k + 1:k + n + 1]
    yield EvalChunk(x, y, m)


# ----------------------------------------------------------------------------------
# Lazy splits: file datasets streamed from disk (the reference's `UnorderedSeqFileData`).

def is_lazy(seqs) -> bool:
  """True for a lazy split (has `lengths()` and `take(indices)`), False for a list."""
  return callable(getattr(seqs, 'lengths', None)) and callable(getattr(seqs, 'take', None))


def sequence_lengths(seqs) -> np.ndarray:
  """[N] int64 element counts (row-major size) of each sequence; lazy splits answer
  from their index without reading audio."""
  if is_lazy(seqs):
    return np.asarray(seqs.lengths(), np.int64)
  return np.asarray([np.size(s) for s in seqs], np.int64)


def take(seqs, indices: Sequence[int]) -> List[np.ndarray]:
  """The sequences at `indices`, in that order (one read for a lazy split)."""
  if is_lazy(seqs):
    return list(seqs.take(indices))
  return [seqs[i] for i in indices]


def eval_order(seqs, d_data: int, sort: bool) -> np.ndarray:
  """Evaluation order: by number of steps (stable, as `sorted`) or the list order."""
  n = len(seqs)
  if not sort:
    return np.arange(n)
  return np.argsort(sequence_lengths(seqs) // d_data, kind='stable')


def eval_subset(seqs, num: int, d_data: int, sort: bool) -> List[np.ndarray]:
  """The first `num` sequences in evaluation order, loaded (for max_eval_batches): only
  those are read from a lazy split."""
  return take(seqs, eval_order(seqs, d_data, sort)[:num])


@dataclasses.dataclass(frozen=True)
class _EpochPlan:
  """One epoch of a FileStream: buffers of file indices, their rows and chunk counts."""
  buffers: List[np.ndarray]  # file indices of each buffer, in shuffled order
  carry: np.ndarray  # [num buffers] elements carried in from the previous buffer
  rows: np.ndarray  # [num buffers] steps per batch row of each buffer's stream
  ends: np.ndarray  # [num buffers] cumulative chunk counts (chunks before buffer b+1)


class FileStream:
  """Training stream of a file dataset, one buffer of files in memory at a time.

  Each epoch the file order is `epoch_order(seed, epoch, ...)` (the same draw as
  TrainStream) and cut into buffers of `buffer_files` files (reference: batch_size).
  Each buffer is concatenated, truncated to a multiple of B*D, reshaped [B, n, D] ->
  [n, B, D] and walked in chunks of tgt_len steps like TrainStream; its remainder is
  dropped and its last chunk may be shorter (docs/reference.md, "Data pipelines"). With
  buffer_files >= the number of files this equals TrainStream.

  full_chunks=True (jit-friendly; the reference's short last chunk of every buffer has a
  new length each time, and every new length is a new compilation): each buffer keeps
  n = k*tgt_len + 1 steps per row, so all its chunks have tgt_len steps, and the
  elements left over are carried to the front of the next buffer instead of dropped;
  only the end of an epoch (< (tgt_len + 1)*B*D elements) is dropped.

  Chunk counts per buffer are planned from the file lengths (`sequence_lengths`, no
  audio read), so `batch(step)` is a pure function of (seed, step) and a restarted run
  resumes exactly. `seqs` is a lazy split (`is_lazy`) or a list of arrays. With `rows`,
  only that block of batch rows is built and only the files it touches are read.
  """

  def __init__(self, seqs, batch_size: int, d_data: int, tgt_len: int, seed: int = 0,
               buffer_files: Optional[int] = None, full_chunks: bool = False,
               rows: RowBlock = None):
    self.seqs, self.batch_size, self.d_data = seqs, batch_size, d_data
    self.lo, self.hi = row_block(rows, batch_size)
    self.tgt_len, self.seed, self.full_chunks = tgt_len, seed, full_chunks
    self.buffer_files = int(buffer_files or batch_size)
    if self.buffer_files < 1:
      raise ValueError(f'buffer_files must be positive, got {buffer_files}')
    self.lengths = sequence_lengths(seqs)  # [num files] elements per file
    self._starts = [0]  # first global step of epochs 0, 1, ... (as far as planned)
    self._plan_cache = (None, None)  # (epoch, _EpochPlan)
    self._buffer_cache = (None, None)  # ((epoch, buffer), [rows, hi - lo, D] stream)
    self._tail_cache = (None, None)  # ((epoch, buffer), elements it carries onward)
    if self.chunks_in_epoch(0) == 0:
      raise ValueError(
          f'training data ({self.lengths.size} files, {self.lengths.sum()} elements) give '
          f'no chunk: every buffer of {self.buffer_files} files is shorter than 2 steps '
          f'per row for batch_size {batch_size} x d_data {d_data}; raise buffer_files')

  def plan(self, epoch: int) -> _EpochPlan:
    """Buffers of epoch `epoch` and their chunk counts (cached for the last epoch)."""
    if self._plan_cache[0] != epoch:
      order = epoch_order(self.seed, epoch, self.lengths.size)
      buffers = [order[i:i + self.buffer_files]
                 for i in range(0, order.size, self.buffer_files)]
      row = self.batch_size * self.d_data  # elements per step of the stream
      carry, rows, chunks, left = [], [], [], 0
      for b in buffers:
        total = left + int(self.lengths[b].sum())
        n = total // row
        if self.full_chunks:
          k = (n - 1) // self.tgt_len if n >= 2 else 0
          n = k * self.tgt_len + 1 if k else 0
        else:
          k = -(-(n - 1) // self.tgt_len) if n >= 2 else 0
        carry.append(left)
        rows.append(n)
        chunks.append(k)
        left = total - n * row if self.full_chunks else 0
      self._plan_cache = (epoch, _EpochPlan(buffers, np.array(carry, np.int64),
                                            np.array(rows, np.int64), np.cumsum(chunks)))
    return self._plan_cache[1]

  def chunks_in_epoch(self, epoch: int) -> int:
    return int(self.plan(epoch).ends[-1])

  def position(self, step: int) -> Tuple[int, int]:
    """(epoch, chunk index within the epoch) of 0-based training step `step`."""
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    while self._starts[-1] <= step:
      epoch = len(self._starts) - 1
      self._starts.append(self._starts[-1] + self.chunks_in_epoch(epoch))
      if len(self._starts) > 64 and self._starts[-1] == self._starts[-65]:
        raise ValueError('64 epochs in a row gave no chunk; raise buffer_files')
    epoch = bisect.bisect_right(self._starts, step) - 1
    return epoch, step - self._starts[epoch]

  def _span(self, epoch: int, buffer: int, start: int, stop: int) -> np.ndarray:
    """Elements [start, stop) of one buffer's stream (the elements carried in from the
    previous buffer, then its files), reading only the files the span touches."""
    plan = self.plan(epoch)
    carry = int(plan.carry[buffer])
    parts = []
    if start < carry:  # the previous buffer's tail: its elements from its used part on
      key, tail = self._tail_cache
      if key == (epoch, buffer - 1):
        parts.append(tail[start:min(stop, carry)])
      else:
        used = int(plan.rows[buffer - 1]) * self.batch_size * self.d_data
        parts.append(self._span(epoch, buffer - 1, used + start, used + min(stop, carry)))
    if stop > carry:
      parts.append(read_span(self.seqs, self.lengths, plan.buffers[buffer],
                             max(start, carry) - carry, stop - carry))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)

  def buffer_stream(self, epoch: int, buffer: int) -> np.ndarray:
    """[rows, hi - lo, D] stream of one buffer (the last one read is kept). Batch row b
    is elements [b * rows * D, (b + 1) * rows * D) of the buffer's stream."""
    if self._buffer_cache[0] != (epoch, buffer):
      self._buffer_cache = (None, None)  # free the old buffer before reading the next
      plan = self.plan(epoch)
      rows = int(plan.rows[buffer])
      per_row = rows * self.d_data
      stop = self.hi * per_row
      owns_tail = self.full_chunks and self.hi == self.batch_size
      if owns_tail:  # read on to the buffer's end: the next buffer starts with it
        stop = int(plan.carry[buffer] + self.lengths[plan.buffers[buffer]].sum())
      flat = self._span(epoch, buffer, self.lo * per_row, stop)
      used = (self.hi - self.lo) * per_row
      if owns_tail:
        self._tail_cache = ((epoch, buffer), flat[used:].copy())
      stream = flat[:used].reshape(self.hi - self.lo, rows, self.d_data).transpose(1, 0, 2)
      self._buffer_cache = ((epoch, buffer), stream)
    return self._buffer_cache[1]

  def batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y), each [L, hi - lo, D] (the last chunk of a buffer may be shorter unless
    full_chunks)."""
    epoch, chunk = self.position(step)
    plan = self.plan(epoch)
    buffer = int(np.searchsorted(plan.ends, chunk, side='right'))
    local = chunk - (int(plan.ends[buffer - 1]) if buffer else 0)
    return shifted_chunk(self.buffer_stream(epoch, buffer), local, self.tgt_len)


def make_train_stream(seqs, batch_size: int, d_data: int, tgt_len: int, seed: int = 0,
                      buffer_files: Optional[int] = None, full_chunks: bool = True,
                      rows: RowBlock = None):
  """FileStream for a lazy split (or when buffer_files is given), else TrainStream;
  both have batch(step) -> (x, y) [L, hi - lo, D] and position(step) -> (epoch, chunk).

  File streams default to full_chunks=True (every chunk tgt_len steps, so one compiled
  train step); full_chunks=False is the reference's buffer-by-buffer chunking.
  """
  if is_lazy(seqs) or buffer_files:
    return FileStream(seqs, batch_size, d_data, tgt_len, seed, buffer_files, full_chunks,
                      rows)
  return TrainStream(seqs, batch_size, d_data, tgt_len, seed, rows)
