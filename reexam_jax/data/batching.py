"""The reference's batching, shared by every domain (spec §8.5).

Training: each epoch the sequences are shuffled, concatenated into one stream, cut
into `batch_size` contiguous rows and walked in chunks of `tgt_len` steps with the
one-step shift x = S[k:k+L], y = S[k+1:k+L+1]. Sequence boundaries are crossed, no mask.

Evaluation: whole sequences, sorted by length, padded and masked per batch, cut into
chunks that each start from a zero state; the first step of a sequence is never scored.
Every evaluation chunk is padded to [tgt_len, batch_size] (mask 0) so one compiled
function serves all chunks.

Sequences are numpy arrays [T_i, D] (or anything whose row-major flattening is the
element stream, e.g. a [T, 88] piano roll read as D = 1).
"""
import dataclasses
from typing import Iterator, Sequence, Tuple

import numpy as np


def as_steps(seq: np.ndarray, d_data: int) -> np.ndarray:
  """Row-major flattening re-cut into [T, d_data] steps; a trailing partial step is
  dropped (the reference truncates to a multiple of D)."""
  flat = np.asarray(seq, np.float32).reshape(-1)
  n = flat.size // d_data
  return flat[:n * d_data].reshape(n, d_data)


@dataclasses.dataclass
class TrainStream:
  """Chunks of the concatenated, shuffled training stream, resumable at any step.

  The shuffle of epoch e is drawn from `np.random.default_rng([seed, e])`, so chunk
  `step` is a pure function of (seed, step): a restarted run sees exactly the batches
  an uninterrupted one would.
  """
  seqs: Sequence[np.ndarray]
  batch_size: int
  d_data: int
  tgt_len: int
  seed: int = 0

  def __post_init__(self):
    total = sum(int(np.size(s)) for s in self.seqs)
    self.num_rows = total // (self.batch_size * self.d_data)  # steps per batch row
    if self.num_rows < 2:
      raise ValueError(f'training data has {total} elements: too few for batch_size '
                       f'{self.batch_size} x d_data {self.d_data} (need 2 steps per row)')
    self.chunks_per_epoch = -(-(self.num_rows - 1) // self.tgt_len)
    self._epoch, self._stream = None, None

  def epoch_stream(self, epoch: int) -> np.ndarray:
    """[num_rows, B, D] stream of one epoch."""
    if epoch != self._epoch:
      order = np.random.default_rng([self.seed, epoch]).permutation(len(self.seqs))
      flat = np.concatenate([np.asarray(self.seqs[i], np.float32).reshape(-1)
                             for i in order])
      n = self.num_rows * self.batch_size * self.d_data
      self._stream = flat[:n].reshape(self.batch_size, self.num_rows, self.d_data)
      self._stream = self._stream.transpose(1, 0, 2)
      self._epoch = epoch
    return self._stream

  def position(self, step: int) -> Tuple[int, int]:
    """(epoch, chunk index) of 0-based training step `step`."""
    return divmod(step, self.chunks_per_epoch)

  def batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y), each [L, B, D] (the last chunk of an epoch may be shorter)."""
    epoch, chunk = self.position(step)
    stream = self.epoch_stream(epoch)
    start = chunk * self.tgt_len
    stop = min(start + self.tgt_len, self.num_rows - 1)
    return stream[start:stop], stream[start + 1:stop + 1]

  def iterate(self, start_step: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    step = start_step
    while True:
      yield self.batch(step)
      step += 1


@dataclasses.dataclass(frozen=True)
class EvalChunk:
  """One evaluation chunk: x, y [L, B, D] and mask [L, B] (1 where y is scored)."""
  x: np.ndarray
  y: np.ndarray
  mask: np.ndarray


def eval_chunks(seqs: Sequence[np.ndarray], batch_size: int, d_data: int, tgt_len: int,
                sort: bool = True) -> Iterator[EvalChunk]:
  """Evaluation chunks over whole sequences, each [tgt_len, batch_size] (padded).

  Sequences are sorted by length (`sort`, as for TIMIT and MIDI) or kept in order (VCTK,
  Blizzard file lists), batched, zero-padded to the batch's longest sequence, and cut
  into chunks; every chunk is scored from a zero state.
  """
  steps = [as_steps(s, d_data) for s in seqs]
  order = sorted(range(len(steps)), key=lambda i: len(steps[i])) if sort else range(len(steps))
  order = list(order)
  for start in range(0, len(order), batch_size):
    group = [steps[i] for i in order[start:start + batch_size]]
    t_max = max(len(s) for s in group)
    padded = np.zeros((t_max, batch_size, d_data), np.float32)
    mask = np.zeros((t_max, batch_size), np.float32)
    for b, s in enumerate(group):
      padded[:len(s), b] = s
      mask[:len(s), b] = 1.0
    for k in range(0, t_max - 1, tgt_len):
      n = min(tgt_len, t_max - 1 - k)
      x = np.zeros((tgt_len, batch_size, d_data), np.float32)
      y = np.zeros_like(x)
      m = np.zeros((tgt_len, batch_size), np.float32)
      x[:n], y[:n], m[:n] = padded[k:k + n], padded[k + 1:k + n + 1], mask[k + 1:k + n + 1]
      yield EvalChunk(x, y, m)

