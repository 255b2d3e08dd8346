"""Pure numpy transforms of 1-D audio used by the speech pipelines (docs/reference.md,
"Data pipelines").

Every function takes and returns numpy arrays and never mutates its input. Statistics
are accumulated in float64 so that hours of audio give the same mean and std as one
pass over the concatenated samples.
"""
import math
from typing import Tuple

import numpy as np
import scipy.signal

# Perm-TIMIT: the reference draws torch.randperm(200) after torch.manual_seed(123456);
# torch cannot be reproduced without torch, so we fix numpy's permutation instead.
PERM_SEED = 123456
PERM_SIZE = 200

STRIDE_MODES = ('all_phases', 'single_phase')

Moments = Tuple[int, float, float]  # (count, mean, sum of squared deviations)


def moments(x: np.ndarray) -> Moments:
  """(n, mean, M2) of all elements of x, in float64."""
  x = np.asarray(x, np.float64).reshape(-1)
  if x.size == 0:
    return 0, 0.0, 0.0
  mean = float(x.mean())
  d = x - mean
  return x.size, mean, float(np.dot(d, d))  # dot: ~10x faster than square().sum()


def combine_moments(a: Moments, b: Moments) -> Moments:
  """Moments of the concatenation of two sets (Chan et al.'s parallel update)."""
  n_a, mean_a, m2_a = a
  n_b, mean_b, m2_b = b
  n = n_a + n_b
  if n == 0:
    return 0, 0.0, 0.0
  delta = mean_b - mean_a
  mean = mean_a + delta * n_b / n
  return n, mean, m2_a + m2_b + delta * delta * n_a * n_b / n


def mean_std_from_moments(m: Moments, unbiased: bool) -> Tuple[float, float]:
  """Scalar mean and std; unbiased divides by n - 1 (torch.std, TIMIT), else by n
  (population std, the VCTK/Blizzard file loaders)."""
  n, mean, m2 = m
  dof = n - 1 if unbiased else n
  if dof <= 0:
    raise ValueError(f'cannot compute a std from {n} samples')
  return mean, math.sqrt(m2 / dof)


def normalise(x: np.ndarray, mean: float, std: float) -> np.ndarray:
  """(x - mean) / std as float32."""
  return ((np.asarray(x, np.float64) - mean) / std).astype(np.float32)


def truncate_multiple(x: np.ndarray, m: int) -> np.ndarray:
  """x[:floor(N/m)*m] of a 1-D array."""
  x = np.asarray(x).reshape(-1)
  return x[:x.size // m * m]


def frame(x: np.ndarray, d_data: int) -> np.ndarray:
  """1-D audio [N] -> steps [N // d_data, d_data]; a trailing partial step is dropped."""
  x = truncate_multiple(x, d_data)
  return x.reshape(-1, d_data)


def timit_permutation(size: int = PERM_SIZE, seed: int = PERM_SEED) -> np.ndarray:
  """The fixed Perm-TIMIT permutation [size] of range(size)."""
  return np.random.RandomState(seed).permutation(size)


def permute_blocks(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
  """Perm-TIMIT: truncate to a multiple of P = len(perm), then within every block of P
  samples put old sample perm[j] at position j (the reference's `view(-1, P)[:, perm]`)."""
  return frame(x, len(perm))[:, perm].reshape(-1)


def stride(x: np.ndarray, m: int, mode: str = 'all_phases') -> np.ndarray:
  """Down-sample a 1-D sequence by m (the paper's "high volatility" setting).

  'all_phases' (the reference): truncate to floor(N/m)*m and concatenate the m phase
  sub-sequences x[0::m], x[1::m], ..., x[m-1::m], so every sample is kept.
  'single_phase' (the paper's wording): x[::m] only.
  """
  x = np.asarray(x).reshape(-1)
  if m == 1:
    return x
  if mode == 'all_phases':
    return frame(x, m).T.reshape(-1)  # [N/m, m] -> [m, N/m] -> phases in a row
  if mode == 'single_phase':
    return x[::m]
  raise ValueError(f'unknown stride mode {mode!r}; expected one of {STRIDE_MODES}')


def to_mono(x: np.ndarray) -> np.ndarray:
  """[N] or channels-last [N, C] audio -> [N], averaging channels."""
  x = np.asarray(x)
  return x.mean(axis=1) if x.ndim == 2 else x.reshape(-1)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
  """Polyphase resampling of 1-D audio (e.g. VCTK 48 kHz -> 16 kHz) as float32."""
  if orig_sr == target_sr:
    return np.asarray(x, np.float32)
  g = math.gcd(orig_sr, target_sr)
  y = scipy.signal.resample_poly(np.asarray(x, np.float64), target_sr // g, orig_sr // g)
  return y.astype(np.float32)
