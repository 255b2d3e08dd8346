"""reexam_jax.likelihoods against independent float64 computations (scipy / numpy).

Inputs are drawn in float32 (the package's dtype); the references are evaluated in
float64 on exactly those float32 values, so only the library's arithmetic is tested.
"""
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from reexam_jax import likelihoods

# The functions under test, jitted (one compilation per shape instead of eager dispatch).
J = types.SimpleNamespace(**{name: jax.jit(getattr(likelihoods, name)) for name in (
    'gmm_log_prob', 'normal_log_prob', 'bernoulli_log_prob', 'diag_gaussian_kl',
    'diag_gaussian_log_prob')})


def _jit_grad(fun, argnums=0):
  return jax.jit(jax.grad(fun, argnums=argnums))


def _f32(rng, shape, scale=1.0, loc=0.0):
  return (loc + scale * rng.standard_normal(shape)).astype(np.float32)


def _ref_gmm(y, means, log_stds, logits):
  """float64 reference: logsumexp_k(log_softmax(logits)_k + log N(y; mean_k, std_k))."""
  y, means, log_stds, logits = (np.asarray(a, np.float64)
                                for a in (y, means, log_stds, logits))
  log_w = logits - special.logsumexp(logits, axis=-1, keepdims=True)
  comp = stats.norm.logpdf(y[..., None], loc=means, scale=np.exp(log_stds))
  return special.logsumexp(log_w + comp, axis=-1)


def _all_finite(tree):
  return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


# ----------------------------------------------------------------------------------------
# Gaussian mixture.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('k', [1, 5, 20])
def test_gmm_log_prob_matches_scipy(k):
  rng = np.random.default_rng(k)
  shape = (6, 4, 3)
  y = _f32(rng, shape, 2.0)
  means = _f32(rng, shape + (k,), 1.5)
  log_stds = _f32(rng, shape + (k,), 0.7)
  logits = _f32(rng, shape + (k,), 2.0)
  got = np.asarray(J.gmm_log_prob(y, means, log_stds, logits))
  assert got.shape == shape
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, _ref_gmm(y, means, log_stds, logits), rtol=1e-5, atol=1e-5)


def test_gmm_log_prob_k1_ignores_logits():
  """With K = 1 the prior logits still exist but log_softmax makes them irrelevant."""
  rng = np.random.default_rng(0)
  y = _f32(rng, (10,))
  means, log_stds = _f32(rng, (10, 1)), _f32(rng, (10, 1), 0.5)
  ref = stats.norm.logpdf(y.astype(np.float64), means[:, 0], np.exp(log_stds[:, 0].astype(np.float64)))
  for logits in (np.zeros((10, 1), np.float32), _f32(rng, (10, 1), 30.0)):
    got = J.gmm_log_prob(y, means, log_stds, logits)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  grad = _jit_grad(lambda l: J.gmm_log_prob(y, means, log_stds, l).sum())(
      _f32(rng, (10, 1)))
  np.testing.assert_array_equal(grad, 0.0)


def test_gmm_log_prob_broadcasts_y_over_components():
  """A mixture whose components are all identical is that component, whatever the weights."""
  rng = np.random.default_rng(1)
  y = _f32(rng, (5,))
  mean, log_std = _f32(rng, (5, 1)), _f32(rng, (5, 1), 0.3)
  got = J.gmm_log_prob(y, np.repeat(mean, 7, -1), np.repeat(log_std, 7, -1),
                                 _f32(rng, (5, 7), 3.0))
  ref = stats.norm.logpdf(y.astype(np.float64), mean[:, 0], np.exp(log_std[:, 0].astype(np.float64)))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('log_std', [-15.0, 15.0])
def test_gmm_log_prob_extreme_log_std(log_std):
  """No clamp on log_std (spec §1.3): values are exact and gradients finite at ±15."""
  rng = np.random.default_rng(2)
  k = 5
  y = _f32(rng, (8,))
  # Near the mean (within a few sigma) and far from it (up to ~1e7 sigma at -15).
  offsets = np.concatenate([rng.standard_normal(4) * math.exp(log_std) * 3,
                            rng.standard_normal(4) * 0.5]).astype(np.float32)
  means = (y + offsets).astype(np.float32)[:, None] + np.zeros((1, k), np.float32)
  means[:, 1:] += _f32(rng, (8, k - 1), 0.2)
  log_stds = np.full((8, k), log_std, np.float32)
  logits = _f32(rng, (8, k))
  got = np.asarray(J.gmm_log_prob(y, means, log_stds, logits))
  ref = _ref_gmm(y, means, log_stds, logits)
  assert np.all(np.isfinite(got))
  # Relative error of float32 squares of z ~ 1e7 is ~1e-7 * z^2.
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
  grads = _jit_grad(lambda *a: J.gmm_log_prob(*a).sum(), argnums=(0, 1, 2, 3))(
      jnp.asarray(y), jnp.asarray(means), jnp.asarray(log_stds), jnp.asarray(logits))
  assert _all_finite(grads)


@pytest.mark.parametrize('dominant_is_close', [True, False])
def test_gmm_log_prob_one_dominating_component(dominant_is_close):
  """K = 20, one component with overwhelming weight (logit 200, the rest ~e^-200).

  If that component is near y the result is its density; if it is 40 sigma away, the
  e^-200-weighted components near y win (log p ~ -200, not the -800 of the dominant one).
  Values match float64 and gradients stay finite either way.
  """
  rng = np.random.default_rng(3)
  k, n = 20, 16
  y = _f32(rng, (n,))
  means = _f32(rng, (n, k), 3.0)
  log_stds = _f32(rng, (n, k), 0.5)
  logits = _f32(rng, (n, k))
  logits[:, 7] = 200.0
  means[:, 7] = y + (0.5 if dominant_is_close else 40.0)
  log_stds[:, 7] = 0.0
  got = np.asarray(J.gmm_log_prob(y, means, log_stds, logits))
  ref = _ref_gmm(y, means, log_stds, logits)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  ref_dominant = stats.norm.logpdf(y.astype(np.float64), means[:, 7].astype(np.float64), 1.0)
  if dominant_is_close:
    np.testing.assert_allclose(got, ref_dominant, rtol=1e-5)
  else:
    assert np.all(got > -205.0) and np.all(got < -190.0)
  grads = _jit_grad(lambda *a: J.gmm_log_prob(*a).sum(), argnums=(0, 1, 2, 3))(
      jnp.asarray(y), jnp.asarray(means), jnp.asarray(log_stds), jnp.asarray(logits))
  assert _all_finite(grads)
  if dominant_is_close:
    # d/dy log N(y; m, 1) = m - y = 0.5; the other components get ~zero responsibility.
    np.testing.assert_allclose(grads[0], 0.5, rtol=1e-3)
    np.testing.assert_allclose(grads[3][:, 7], 0.0, atol=1e-6)


def test_gmm_log_prob_normalised():
  """Integrates to one (trapezoid rule on a fine grid) for a random 5-component mixture."""
  rng = np.random.default_rng(4)
  means = _f32(rng, (5,), 2.0)
  log_stds = _f32(rng, (5,), 0.3) - 0.5
  logits = _f32(rng, (5,))
  grid = np.linspace(-20, 20, 200001, dtype=np.float32)
  dens = np.exp(np.asarray(J.gmm_log_prob(
      grid, np.broadcast_to(means, (grid.size, 5)), np.broadcast_to(log_stds, (grid.size, 5)),
      np.broadcast_to(logits, (grid.size, 5)))).astype(np.float64))
  np.testing.assert_allclose(np.trapezoid(dens, grid.astype(np.float64)), 1.0, atol=1e-4)


@pytest.mark.parametrize('log_std', [-15.0, -2.0, 0.0, 3.0, 15.0])
def test_normal_log_prob_matches_scipy(log_std):
  rng = np.random.default_rng(5)
  y, mean = _f32(rng, (50,), 3.0), _f32(rng, (50,), 3.0)
  # Keep some points within a few sigma even for tiny sigma.
  mean[:10] = y[:10] + (rng.standard_normal(10) * math.exp(log_std)).astype(np.float32)
  got = np.asarray(J.normal_log_prob(y, mean, np.float32(log_std)))
  ref = stats.norm.logpdf(y.astype(np.float64), mean.astype(np.float64), math.exp(log_std))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------------------
# Bernoulli.
# ----------------------------------------------------------------------------------------
def test_bernoulli_log_prob_matches_float64():
  rng = np.random.default_rng(6)
  logits = _f32(rng, (200,), 6.0)
  y = (rng.random(200) < 0.5).astype(np.float32)
  p = special.expit(logits.astype(np.float64))
  ref = np.where(y == 1, np.log(p), np.log1p(-p))
  got = np.asarray(J.bernoulli_log_prob(y, logits))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
  # Same as scipy's log_expit form: y log s(l) + (1 - y) log s(-l).
  ref2 = y * special.log_expit(logits.astype(np.float64)) + (1 - y) * special.log_expit(
      -logits.astype(np.float64))
  np.testing.assert_allclose(got, ref2, rtol=1e-5, atol=1e-6)


def test_bernoulli_log_prob_soft_targets_are_bce_with_logits():
  """BCE-with-logits is also defined for targets in (0, 1)."""
  rng = np.random.default_rng(7)
  logits = _f32(rng, (50,), 4.0)
  y = rng.random(50).astype(np.float32)
  l64 = logits.astype(np.float64)
  ref = y * special.log_expit(l64) + (1 - y) * special.log_expit(-l64)
  np.testing.assert_allclose(J.bernoulli_log_prob(y, logits), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('logit,y,expected', [
    (100.0, 0.0, -100.0), (-100.0, 1.0, -100.0),
    (100.0, 1.0, 0.0), (-100.0, 0.0, 0.0),
    (1000.0, 0.0, -1000.0), (-1000.0, 1.0, -1000.0),
])
def test_bernoulli_log_prob_extreme_logits(logit, y, expected):
  lp = J.bernoulli_log_prob(jnp.float32(y), jnp.float32(logit))
  assert np.isfinite(lp)
  np.testing.assert_allclose(lp, expected, rtol=1e-6, atol=1e-30)
  g = _jit_grad(likelihoods.bernoulli_log_prob, argnums=1)(jnp.float32(y), jnp.float32(logit))
  assert np.isfinite(g)
  # d/dl log p = y - sigmoid(l).
  np.testing.assert_allclose(g, y - special.expit(logit), atol=1e-6)


# ----------------------------------------------------------------------------------------
# Diagonal Gaussians: KL and log-density.
# ----------------------------------------------------------------------------------------
def _kl_closed_form(mu_q, lv_q, mu_p, lv_p):
  """KL(N(mu_q, s_q^2) || N(mu_p, s_p^2)) = log(s_p/s_q) + (s_q^2 + d^2)/(2 s_p^2) - 1/2."""
  mu_q, lv_q, mu_p, lv_p = (np.asarray(a, np.float64) for a in (mu_q, lv_q, mu_p, lv_p))
  s_q, s_p = np.exp(0.5 * lv_q), np.exp(0.5 * lv_p)
  return np.log(s_p / s_q) + (s_q ** 2 + (mu_q - mu_p) ** 2) / (2 * s_p ** 2) - 0.5


def _kl_entropy_form(mu_q, lv_q, mu_p, lv_p):
  """KL = cross-entropy H(q, p) - H(q), H(q) from scipy."""
  mu_q, lv_q, mu_p, lv_p = (np.asarray(a, np.float64) for a in (mu_q, lv_q, mu_p, lv_p))
  s_q, s_p = np.exp(0.5 * lv_q), np.exp(0.5 * lv_p)
  cross = 0.5 * np.log(2 * np.pi * s_p ** 2) + (s_q ** 2 + (mu_q - mu_p) ** 2) / (2 * s_p ** 2)
  return cross - stats.norm(mu_q, s_q).entropy()


def _random_kl_args(rng, shape, lv_scale=1.5):
  return (_f32(rng, shape, 1.5), _f32(rng, shape, lv_scale), _f32(rng, shape, 1.5),
          _f32(rng, shape, lv_scale))


def test_diag_gaussian_kl_matches_closed_form_and_scipy_entropy():
  rng = np.random.default_rng(8)
  args = _random_kl_args(rng, (7, 3, 11))
  got = np.asarray(J.diag_gaussian_kl(*args))
  assert got.shape == (7, 3, 11)
  np.testing.assert_allclose(got, _kl_closed_form(*args), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got, _kl_entropy_form(*args), rtol=1e-5, atol=1e-5)
  assert np.all(got >= -1e-6)


def test_diag_gaussian_kl_matches_monte_carlo():
  rng = np.random.default_rng(9)
  args = _random_kl_args(rng, (6,), lv_scale=0.8)
  mu_q, lv_q, mu_p, lv_p = (a.astype(np.float64) for a in args)
  n = 400000
  z = mu_q + np.exp(0.5 * lv_q) * rng.standard_normal((n, 6))
  log_ratio = (stats.norm.logpdf(z, mu_q, np.exp(0.5 * lv_q))
               - stats.norm.logpdf(z, mu_p, np.exp(0.5 * lv_p)))
  est, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)
  got = np.asarray(J.diag_gaussian_kl(*args))
  assert np.all(np.abs(got - est) < 5 * se + 1e-4), (got, est, se)


def test_diag_gaussian_kl_is_zero_for_equal_and_is_asymmetric():
  rng = np.random.default_rng(10)
  mu, lv = _f32(rng, (20,)), _f32(rng, (20,))
  np.testing.assert_allclose(J.diag_gaussian_kl(mu, lv, mu, lv), 0.0, atol=1e-6)
  # Argument order is (q, p): KL(q||p) != KL(p||q) in general.
  mu2, lv2 = _f32(rng, (20,)), _f32(rng, (20,))
  np.testing.assert_allclose(J.diag_gaussian_kl(mu, lv, mu2, lv2),
                             _kl_closed_form(mu, lv, mu2, lv2), rtol=1e-5, atol=1e-5)
  assert not np.allclose(J.diag_gaussian_kl(mu, lv, mu2, lv2),
                         J.diag_gaussian_kl(mu2, lv2, mu, lv), rtol=1e-2)


@pytest.mark.parametrize('lv_q,lv_p', [(-8.0, 8.0), (8.0, -8.0), (-15.0, 15.0), (15.0, -15.0)])
def test_diag_gaussian_kl_extremes(lv_q, lv_p):
  """At the SRNN clamp (±8) and beyond, the KL is exact and its gradients finite."""
  rng = np.random.default_rng(11)
  mu_q, mu_p = _f32(rng, (10,), 8.0), _f32(rng, (10,), 8.0)
  lv_q = np.full(10, lv_q, np.float32)
  lv_p = np.full(10, lv_p, np.float32)
  got = np.asarray(J.diag_gaussian_kl(mu_q, lv_q, mu_p, lv_p))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, _kl_closed_form(mu_q, lv_q, mu_p, lv_p), rtol=1e-5)
  grads = _jit_grad(lambda *a: J.diag_gaussian_kl(*a).sum(), argnums=(0, 1, 2, 3))(
      *(jnp.asarray(a) for a in (mu_q, lv_q, mu_p, lv_p)))
  assert _all_finite(grads)
  # d/d mu_q = (mu_q - mu_p) exp(-lv_p).
  np.testing.assert_allclose(grads[0], (mu_q - mu_p) * np.exp(-lv_p.astype(np.float64)),
                             rtol=1e-5)


@pytest.mark.parametrize('lv_scale', [0.5, 3.0])
def test_diag_gaussian_log_prob_matches_scipy(lv_scale):
  """The second argument is a log *variance* (std = exp(logvar / 2))."""
  rng = np.random.default_rng(12)
  z, mu, lv = _f32(rng, (9, 13), 2.0), _f32(rng, (9, 13)), _f32(rng, (9, 13), lv_scale)
  got = np.asarray(J.diag_gaussian_log_prob(z, mu, lv))
  ref = stats.norm.logpdf(z.astype(np.float64), mu, np.exp(0.5 * lv.astype(np.float64)))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('logvar', [-30.0, 30.0])
def test_diag_gaussian_log_prob_extreme_logvar_gradients(logvar):
  rng = np.random.default_rng(13)
  mu = _f32(rng, (10,))
  lv = np.full(10, logvar, np.float32)
  z = (mu + rng.standard_normal(10).astype(np.float32) * np.float32(math.exp(logvar / 2)))
  got = np.asarray(J.diag_gaussian_log_prob(z, mu, lv))
  ref = stats.norm.logpdf(z.astype(np.float64), mu, math.exp(logvar / 2))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)
  grads = _jit_grad(lambda *a: J.diag_gaussian_log_prob(*a).sum(), argnums=(0, 1, 2))(
      jnp.asarray(z), jnp.asarray(mu), jnp.asarray(lv))
  assert _all_finite(grads)
