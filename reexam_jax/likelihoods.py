"""Log-densities and KL terms used by every model: pure jax.numpy, no Flax.

All functions return per-element values (no reduction), so callers choose how to
mask and normalise. Log-likelihoods are in nats.
"""
import math

import jax
import jax.numpy as jnp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def normal_log_prob(y, mean, log_std):
  """log N(y; mean, exp(log_std)^2), elementwise (broadcasting)."""
  z = (y - mean) * jnp.exp(-log_std)
  return -_HALF_LOG_2PI - log_std - 0.5 * jnp.square(z)


def gmm_log_prob(y, means, log_stds, logits):
  """Univariate Gaussian-mixture log-density per element.

  Args:
    y: [...] targets.
    means, log_stds, logits: [..., K] component means, log standard deviations and
      unnormalised mixture weights (no clamp on log_std, as in the reference).
  Returns:
    [...] log p(y).
  """
  log_weights = jax.nn.log_softmax(logits, axis=-1)
  component = normal_log_prob(y[..., None], means, log_stds)  # [..., K]
  return jax.nn.logsumexp(log_weights + component, axis=-1)


def bernoulli_log_prob(y, logits):
  """log Bernoulli(y; sigmoid(logits)) for y in {0, 1}: minus BCE-with-logits."""
  # log sigmoid(l) = -softplus(-l); log(1 - sigmoid(l)) = -softplus(l).
  return -(y * jax.nn.softplus(-logits) + (1.0 - y) * jax.nn.softplus(logits))


def diag_gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
  """KL(q || p) between diagonal Gaussians given by (mean, log variance), per element."""
  return 0.5 * (logvar_p - logvar_q + jnp.exp(logvar_q - logvar_p)
                + jnp.square(mu_q - mu_p) * jnp.exp(-logvar_p) - 1.0)


def diag_gaussian_log_prob(z, mu, logvar):
  """log N(z; mu, exp(logvar)), per element (used by importance-weighted bounds)."""
  return normal_log_prob(z, mu, 0.5 * logvar)


def bivariate_gmm_log_prob(y1, y2, means, log_stds, corr, logits):
  """A correlated bivariate Gaussian mixture, factorised as log p(y1) and
  log p(y2 | y1), so that element 1 never reads element 2 (auto-regressive order).

  Args:
    y1, y2: [...] the two coordinates.
    means, log_stds: [..., K, 2] per component and coordinate.
    corr: [..., K] correlation coefficients in (-1, 1).
    logits: [..., K] unnormalised mixture weights.
  Returns:
    (log p(y1) [...], log p(y2 | y1) [...]); their sum is the joint log-density.
  """
  log_weights = jax.nn.log_softmax(logits, axis=-1)
  mean1, mean2 = means[..., 0], means[..., 1]
  log_std1, log_std2 = log_stds[..., 0], log_stds[..., 1]
  log_p1_k = normal_log_prob(y1[..., None], mean1, log_std1)  # [..., K]
  log_p1 = jax.nn.logsumexp(log_weights + log_p1_k, axis=-1)
  # Given y1, component k's y2 is N(mean2 + corr s2/s1 (y1 - mean1), s2^2 (1 - corr^2)),
  # and the component's weight is its posterior given y1.
  cond_mean = mean2 + corr * jnp.exp(log_std2 - log_std1) * (y1[..., None] - mean1)
  cond_log_std = log_std2 + 0.5 * jnp.log1p(-jnp.square(corr))
  log_post = log_weights + log_p1_k - log_p1[..., None]  # [..., K]
  log_p2 = jax.nn.logsumexp(log_post + normal_log_prob(y2[..., None], cond_mean,
                                                       cond_log_std), axis=-1)
  return log_p1, log_p2
