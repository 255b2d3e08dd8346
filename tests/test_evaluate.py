"""reexam_jax.evaluate: exact LLs in the paper's units for deterministic models, and for
latent models bounds checked against a log-likelihood integrated by quadrature."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reexam_jax import evaluate
from reexam_jax import experiments
from reexam_jax import models
from reexam_jax.models import cores
from reexam_jax.models import sampling


# ----------------------------------------------------------------------------------------
# Deterministic models: exact LL, normalisation units.
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_rnn():
  cfg = experiments.model_config(name='f_rnn', d_data=2, d_rnn=3, d_emb=2, n_mix=2)
  model = models.build_model(cfg)
  return model, jax.jit(models.init_params, static_argnums=(0, 2))(model, jax.random.key(0), 2)


def _hand_total(model, params, seq, tgt_len):
  """LL of one sequence [T, D]: chunks of tgt_len targets, each from a zero state, the
  first step never a target."""
  apply = jax.jit(lambda x, y: model.apply({'params': params}, x, y)['log_prob'].sum())
  total = 0.0
  for k in range(0, len(seq) - 1, tgt_len):
    n = min(tgt_len, len(seq) - 1 - k)
    total += float(apply(seq[k:k + n, None], seq[k + 1:k + n + 1, None]))
  return total


@pytest.mark.parametrize('normalisation,unit', [('sequence', 'nats/sequence'),
                                                (1, 'nats/sample'),
                                                (88, 'nats/88-note step'),
                                                (8000, 'nats/8000 samples')])
def test_deterministic_ll_in_paper_units(tiny_rnn, normalisation, unit):
  model, params = tiny_rnn
  rng = np.random.default_rng(0)
  seqs = [rng.normal(size=(t, 2)).astype(np.float32) for t in (6, 3, 5)]
  totals = np.array([_hand_total(model, params, s, 2) for s in seqs])
  targets = np.array([len(s) - 1 for s in seqs]) * 2  # scored elements per sequence
  want = (totals.sum() / 3 if normalisation == 'sequence'
          else totals.sum() / targets.sum() * normalisation)

  ev = evaluate.Evaluator(model, d_data=2, batch_size=2, tgt_len=2,
                          normalisation=normalisation)
  out = ev(params, seqs, jax.random.key(0), num_samples=2)
  assert evaluate.ll_unit(normalisation, 2) == unit
  assert out['num_sequences'] == 3 and out['num_steps'] == targets.sum() / 2
  np.testing.assert_allclose([out['elbo'], out['bound']], [want, want], rtol=1e-5)
  assert out['elbo_mc_stderr'] == 0.0  # nothing random
  if normalisation == 'sequence':
    np.testing.assert_allclose(out['elbo_stderr'], totals.std(ddof=1) / math.sqrt(3),
                               rtol=1e-5)


def test_stderr_per_element_with_equal_lengths():
  """Equal lengths: the ratio's standard error is that of the per-sequence means."""
  totals, elements = np.array([-3.0, -5.0, -4.5, -1.0]), np.full(4, 10.0)
  want = np.std(totals / 10, ddof=1) / 2 * 88
  assert math.isclose(evaluate.normalised_stderr(totals, elements, 88), want)
  assert math.isnan(evaluate.normalised_stderr(totals[:1], elements[:1], 88))


# ----------------------------------------------------------------------------------------
# Latent models: ELBO <= IWAE_K <= IWAE_K' <= log p(y), checked against quadrature.
# ----------------------------------------------------------------------------------------
SEQ = np.array([[0.3], [1.2]], np.float32)  # one scored step: y = 1.2 given x = 0.3
ROWS = 2048  # copies of SEQ: each evaluates an independent estimate; results average them


@pytest.fixture(scope='module')
def tiny_srnn():
  cfg = experiments.model_config(name='f_srnn', d_data=1, d_rnn=2, d_emb=2, d_lat=1,
                                 d_mlp=0, head='gmm', dropout=0.0)
  model = models.build_model(cfg)
  params = jax.jit(models.init_params, static_argnums=(0, 2))(model, jax.random.key(0), 1)
  return model, params


def _prior(model, x):
  """(mu, logvar) [B, Z] of the SRNN prior at the first step of x [B, D] (a method for
  model.apply)."""
  core = model.core
  fwd, _ = core.fwd_rnn(core.inp_emb(x[None], deterministic=True), deterministic=True)
  return tuple(a[0] for a in cores.latent_params(core.prior, fwd, True))


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _log_marginal(model, params, x0, y0, width=10.0, num=4001):
  """log p(y0 | x0) = log int p(y0 | z) p(z | x0) dz as a Riemann sum over a grid of
  +-width prior standard deviations (the integrand is smooth and negligible at the
  edges), scoring y0 at every z of the grid with the step-wise model (checked against
  model.apply in test_sample)."""
  mu, logvar = model.apply({'params': params}, x0[None], method=_prior)  # [1, 1] each
  z = mu + jnp.exp(0.5 * logvar) * jnp.linspace(-width, width, num)[:, None]  # [G, 1]
  grid = lambda a: jnp.broadcast_to(a, (num,) + a.shape)
  _, _, log_py, log_pz = sampling.step(model, params, sampling.initial_carry(model, num),
                                       grid(x0), jax.random.key(0), y=grid(y0), z=z)
  return jax.nn.logsumexp(log_py.sum(-1) + log_pz) + jnp.log(z[1, 0] - z[0, 0])


@pytest.fixture(scope='module')
def srnn_scores(tiny_srnn):
  model, params = tiny_srnn
  ev = evaluate.Evaluator(model, d_data=1, batch_size=ROWS, tgt_len=1,
                          normalisation='sequence', samples_per_pass=64)
  scores = {k: ev(params, [SEQ] * ROWS, jax.random.key(k), num_samples=k)
            for k in (1, 4, 64, 512)}
  return float(_log_marginal(model, params, SEQ[0], SEQ[1])), scores


def test_quadrature_has_converged(tiny_srnn):
  model, params = tiny_srnn
  coarse = _log_marginal(model, params, SEQ[0], SEQ[1], 8.0, 1001)
  fine = _log_marginal(model, params, SEQ[0], SEQ[1], 12.0, 8001)
  assert abs(float(coarse) - float(fine)) < 2e-3


def test_iwae_tightens_towards_the_integrated_ll(srnn_scores):
  log_p, s = srnn_scores
  # Analytic-KL ELBO and the one-sample bound have the same expectation.
  assert abs(s[1]['elbo'] - s[1]['bound']) < 3 * s[1]['bound_stderr']
  # The posterior is poor (random weights): the gaps are wide against the noise.
  assert log_p - s[1]['elbo'] > 0.2
  # (Between 64 and 512 the gap, ~0.004 nats, is within the noise: not compared.)
  chain = [(s[1]['elbo'], s[1]['elbo_stderr'])] + [
      (s[k]['bound'], s[k]['bound_stderr']) for k in (4, 64)]
  for (lo, lo_se), (hi, hi_se) in zip(chain, chain[1:]):
    assert hi - lo > 5 * math.hypot(lo_se, hi_se), chain  # observed: > 9
  # Every bound stays below log p(y), and K = 512 is within 0.01 nats of it.
  for k in (4, 64, 512):
    assert s[k]['bound'] < log_p + 3 * s[k]['bound_stderr']
  assert abs(s[512]['bound'] - log_p) < 0.01


def test_elbo_monte_carlo_stderr(srnn_scores):
  """All rows hold the same data, so the spread over sequences is pure Monte-Carlo
  noise: the two standard errors estimate the same number."""
  _, s = srnn_scores
  for k in (4, 64):
    assert 0.8 < s[k]['elbo_stderr'] / s[k]['elbo_mc_stderr'] < 1.25
  assert math.isnan(s[1]['elbo_mc_stderr'])
  # Averaging 16x more draws per row shrinks the Monte-Carlo error about 4x.
  assert 3 < s[4]['elbo_mc_stderr'] / s[64]['elbo_mc_stderr'] < 5.3
