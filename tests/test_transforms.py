"""Pure transforms of speech audio, against hand computations."""
import numpy as np
import pytest
import scipy.signal

from reexam_jax.data import transforms


def _mean_std(seqs, unbiased):
  """Train statistics as the speech builders accumulate them, file by file."""
  total = (0, 0.0, 0.0)
  for s in seqs:
    total = transforms.combine_moments(total, transforms.moments(s))
  return transforms.mean_std_from_moments(total, unbiased)


def test_combined_moments_match_concatenation():
  rng = np.random.default_rng(0)
  seqs = [rng.normal(3.0, 2.0, n).astype(np.float32) for n in (1, 7, 100, 0, 33)]
  flat = np.concatenate(seqs).astype(np.float64)
  for unbiased, ddof in ((True, 1), (False, 0)):
    mean, std = _mean_std(seqs, unbiased=unbiased)
    assert mean == pytest.approx(flat.mean(), rel=1e-12)
    assert std == pytest.approx(flat.std(ddof=ddof), rel=1e-12)


def test_std_by_hand():
  # [1, 2, 3, 4]: mean 2.5, squared deviations sum to 5.
  mean, std = _mean_std([np.array([1.0, 2.0]), np.array([3.0, 4.0])], unbiased=True)
  assert (mean, std) == (2.5, pytest.approx(np.sqrt(5 / 3)))
  _, pop = _mean_std([np.array([1.0, 2.0, 3.0, 4.0])], unbiased=False)
  assert pop == pytest.approx(np.sqrt(5 / 4))
  with pytest.raises(ValueError):
    _mean_std([np.array([1.0])], unbiased=True)


def test_normalise():
  y = transforms.normalise(np.array([1.0, 3.0]), 2.0, 0.5)
  assert y.dtype == np.float32
  np.testing.assert_array_equal(y, [-2.0, 2.0])


def test_frame_and_truncate():
  x = np.arange(7)
  np.testing.assert_array_equal(transforms.truncate_multiple(x, 3), [0, 1, 2, 3, 4, 5])
  np.testing.assert_array_equal(transforms.frame(x, 3), [[0, 1, 2], [3, 4, 5]])
  assert transforms.frame(x, 8).shape == (0, 8)


def test_timit_permutation_is_fixed():
  perm = transforms.timit_permutation()
  np.testing.assert_array_equal(perm, np.random.RandomState(123456).permutation(200))
  assert sorted(perm.tolist()) == list(range(200))


def test_permute_blocks_by_hand_and_inverse():
  perm = np.array([2, 0, 1])
  x = np.array([10, 11, 12, 20, 21, 22, 30])  # trailing 30 is truncated
  np.testing.assert_array_equal(transforms.permute_blocks(x, perm), [12, 10, 11, 22, 20, 21])
  y = np.random.default_rng(1).normal(size=1234)
  perm = transforms.timit_permutation()
  z = transforms.permute_blocks(y, perm)
  assert z.size == 1200 and not np.array_equal(z, y[:1200])
  np.testing.assert_array_equal(z.reshape(-1, 200)[:, np.argsort(perm)].reshape(-1),
                                y[:1200])


def test_stride_all_phases_by_hand():
  x = np.arange(10)
  # Truncate to 9, reshape [3, 3] = [[0,1,2],[3,4,5],[6,7,8]], transpose, flatten.
  np.testing.assert_array_equal(transforms.stride(x, 3, 'all_phases'),
                                [0, 3, 6, 1, 4, 7, 2, 5, 8])
  np.testing.assert_array_equal(transforms.stride(x, 1), x)


def test_stride_single_phase():
  np.testing.assert_array_equal(transforms.stride(np.arange(10), 3, 'single_phase'),
                                [0, 3, 6, 9])
  with pytest.raises(ValueError, match='stride mode'):
    transforms.stride(np.arange(10), 3, 'bogus')


def test_to_mono():
  np.testing.assert_array_equal(transforms.to_mono(np.array([[1.0, 3.0], [2.0, 4.0]])),
                                [2.0, 3.0])
  np.testing.assert_array_equal(transforms.to_mono(np.array([1.0, 2.0])), [1.0, 2.0])


def test_resample_48k_to_16k():
  t = np.arange(4800) / 48000
  x = np.sin(2 * np.pi * 440 * t)
  y = transforms.resample(x, 48000, 16000)
  assert y.dtype == np.float32 and y.shape == (1600,)
  np.testing.assert_allclose(y, scipy.signal.resample_poly(x, 1, 3), atol=1e-6)
  # A 440 Hz tone survives: compare with the tone sampled at 16 kHz, away from edges.
  ref = np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
  np.testing.assert_allclose(y[100:-100], ref[100:-100], atol=1e-2)
  assert transforms.resample(x, 16000, 16000).dtype == np.float32
