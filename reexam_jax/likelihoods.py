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
