"""The handwriting models (pen, dx, dy): their densities against an independent
numpy/scipy computation from the parameters, causality, the masked whole-line training
loss and evaluation, and the parameter counts of spec §9.4."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

from reexam_jax import evaluate
from reexam_jax import experiments
from reexam_jax import likelihoods
from reexam_jax import models
from reexam_jax import train
from reexam_jax.data import batching

T, B, H = 4, 3, 5
KEY = jax.random.key(7)


def _config(name, **kw):
  return experiments.model_config(**{**dict(
      name=name, d_data=3, d_rnn=H, d_emb=4, d_mlp=4, d_lat=2, n_mix=2, n_layer=1,
      dropout=0.0, head='handwriting'), **kw})


@functools.lru_cache(maxsize=None)
def _setup(name, bivariate=False):
  model = models.build_model(_config(name, bivariate=bivariate))
  params = models.init_params(model, jax.random.key(1), 3)
  # Mixture weights away from uniform: every parameter matters.
  params = jax.tree.map(lambda p: p * 3.0, params)
  return model, params


def _steps(seed, n=T + 1):
  rng = np.random.default_rng(seed)
  pen = rng.integers(0, 2, (n, B, 1)).astype(np.float32)
  return np.concatenate([pen, rng.standard_normal((n, B, 2)).astype(np.float32)], -1)


def _dense(p, x):
  """TorchDense's x W^T + b in float64."""
  out = np.asarray(x, np.float64) @ np.asarray(p['kernel'], np.float64).T
  return out + np.asarray(p['bias'], np.float64) if 'bias' in p else out


def _gmm_numpy(p, inp, y):
  """log p(y) of a CoordinateGMMHead: scipy's normal densities mixed by softmax."""
  means, log_stds, logits = (_dense(p[n], inp) for n in ('mean', 'log_std', 'logits'))
  comp = stats.norm.logpdf(np.asarray(y, np.float64)[..., None], means, np.exp(log_stds))
  return special.logsumexp(special.log_softmax(logits, -1) + comp, -1)


@pytest.mark.parametrize('hier', [False, True])
def test_output_log_prob_matches_numpy(hier):
  """The output model on a given h: pen BCE plus two 1-D mixtures, hier ones reading
  [h, pen] and [h, pen, dx] (raw values)."""
  name = 'rnn_hier_hw' if hier else 'f_rnn_hw'
  model, params = _setup(name)
  out_params = params['output']
  h = np.random.default_rng(0).standard_normal((T, B, H)).astype(np.float32)
  y = _steps(1, T)
  got = model.output.apply({'params': out_params}, h, y, deterministic=True)
  pen_logit = _dense(out_params['pen'], h)[..., 0]
  want_pen = stats.bernoulli.logpmf(y[..., 0], special.expit(pen_logit))
  ctx_dx = np.concatenate([h, y[..., :1]], -1) if hier else h
  ctx_dy = np.concatenate([h, y[..., :2]], -1) if hier else h
  want = np.stack([want_pen, _gmm_numpy(out_params['gm_dx'], ctx_dx, y[..., 1]),
                   _gmm_numpy(out_params['gm_dy'], ctx_dy, y[..., 2])], -1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_bivariate_mixture_matches_scipy():
  """log p(y1) + log p(y2 | y1) is the joint density of the correlated mixture, and
  log p(y1) its marginal."""
  rng = np.random.default_rng(3)
  k = 3
  means = rng.standard_normal((5, k, 2))
  log_stds = 0.5 * rng.standard_normal((5, k, 2))
  corr = rng.uniform(-0.95, 0.95, (5, k))
  logits = rng.standard_normal((5, k))
  y = rng.standard_normal((5, 2))
  lp1, lp2 = likelihoods.bivariate_gmm_log_prob(
      *(jnp.asarray(a, jnp.float32) for a in (y[:, 0], y[:, 1], means, log_stds, corr,
                                              logits)))
  weights = special.softmax(logits, -1)
  for n in range(5):
    joint = marginal = 0.0
    for c in range(k):
      s1, s2 = np.exp(log_stds[n, c])
      cov = [[s1 * s1, corr[n, c] * s1 * s2], [corr[n, c] * s1 * s2, s2 * s2]]
      joint += weights[n, c] * stats.multivariate_normal.pdf(y[n], means[n, c], cov)
      marginal += weights[n, c] * stats.norm.pdf(y[n, 0], means[n, c, 0], s1)
    np.testing.assert_allclose(lp1[n], np.log(marginal), rtol=1e-4)
    np.testing.assert_allclose(lp1[n] + lp2[n], np.log(joint), rtol=1e-4)


def test_bivariate_samples_have_the_components_covariance():
  """One component: draws have its means, standard deviations and correlation."""
  from reexam_jax import layers  # pylint: disable=g-import-not-at-top
  dist = layers.BivariateGMM(jnp.array([[[1.0, -2.0]]]), jnp.log(jnp.array([[[0.5, 2.0]]])),
                             jnp.array([[0.8]]), jnp.zeros((1, 1)))
  dist = jax.tree.map(lambda a: jnp.broadcast_to(a, (20000,) + a.shape[1:]), dist)
  draws = np.asarray(dist.sample(jax.random.key(0)))
  np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.05)
  np.testing.assert_allclose(draws.std(0), [0.5, 2.0], rtol=0.03)
  np.testing.assert_allclose(np.corrcoef(draws.T)[0, 1], 0.8, atol=0.02)


MODELS = ['f_rnn_hw', 'rnn_hier_hw', 'f_srnn_hw', 'srnn_hier_hw', 'zf_f_srnn_hw']
CASES = [(m, False) for m in MODELS] + [('rnn_hier_hw', True), ('f_srnn_hw', True)]


def _log_prob(name, bivariate, s):
  """log_prob [T, B, 3] of the sequence s [T+1, B, 3]; latent models with z from the
  prior (which reads x only) and one fixed key."""
  model, params = _setup(name, bivariate)
  out = model.apply({'params': params}, s[:-1], s[1:], latent_source='prior',
                    rngs={'latent': KEY})
  return np.asarray(out['log_prob'])


@pytest.mark.parametrize('name,bivariate', CASES)
def test_causality(name, bivariate):
  """Changing element i of step t (y[t, i], x[t+1, i]) leaves every earlier density
  unchanged: all of steps < t, and elements < i of step t (the order pen -> dx -> dy);
  factorised models also leave the other elements of step t unchanged."""
  s = _steps(2)
  base = _log_prob(name, bivariate, s)
  hier = 'hier' in name or bivariate
  for t in range(T):
    for i in range(3):
      s2 = s.copy()
      s2[t + 1, 0, i] = 1.0 - s2[t + 1, 0, i] if i == 0 else s2[t + 1, 0, i] + 1.5
      lp = _log_prob(name, bivariate, s2)
      np.testing.assert_array_equal(lp[:t], base[:t])
      np.testing.assert_array_equal(lp[t, 1:], base[t, 1:])  # other sequences
      unchanged = [j for j in range(3) if j < i or (not hier and j != i)]
      if bivariate and i == 2:  # dy joins dx in one mixture: dx's marginal is kept
        unchanged = [0, 1]
      np.testing.assert_array_equal(lp[t, 0, unchanged], base[t, 0, unchanged])
      assert not np.allclose(lp[t, 0, i], base[t, 0, i])


def test_handwriting_srnn_dropout_and_orthogonality():
  """Spec §4: only the input embedding drops out (h is not), only bwd_rnn has an
  orthogonal W_hh, n_layer is ignored."""
  model = models.build_model(_config('f_srnn_hw', dropout=0.5, n_layer=3))
  assert model.output.input_dropout == 0.0
  params = models.init_params(model, jax.random.key(0), 3)
  core = params['core']
  assert set(core) == {'inp_emb', 'bwd_rnn', 'forward_z', 'forward_h', 'prior', 'post',
                       'gen_mod'}
  for name in ('bwd_rnn', 'forward_z', 'forward_h'):
    assert list(core[name]) == ['layer_0']
  w_hh = lambda name: np.asarray(core[name]['layer_0']['w_hh'])
  np.testing.assert_allclose(w_hh('bwd_rnn').T @ w_hh('bwd_rnn'), np.eye(H), atol=1e-5)
  assert np.abs(w_hh('forward_z')).max() <= H ** -0.5
  assert core['forward_h']['layer_0']['w_ih'].shape == (4 * H, 4 + 4)  # [E + M]
  rnn = models.build_model(_config('f_rnn_hw', dropout=0.5, n_layer=2))
  assert rnn.output.input_dropout == 0.5 and not rnn.core.inter_layer_dropout


def test_d_data_other_than_three_is_refused():
  from reexam_jax import errors  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.UserError, match='d_data=2'):
    models.build_model(_config('f_rnn_hw', d_data=2))


# ----------------------------------------------------------------------------------
# Masked whole-line training and evaluation.

def _lines(lengths, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for n in lengths:
    seq = rng.standard_normal((n, 3)).astype(np.float32)
    seq[:, 0] = rng.integers(0, 2, n)
    out.append(seq)
  return out


def test_padded_stream_batches_whole_lines():
  lines = _lines([3, 7, 5, 2, 9])
  stream = batching.PaddedStream(lines, batch_size=2, d_data=3, pad_multiple=4, seed=1)
  assert stream.batches_per_epoch == 3
  seen = []
  for step in range(3):
    x, y, mask = stream.batch(step)
    assert x.shape[0] % 4 == 0 and x.shape == y.shape and mask.shape == x.shape[:2]
    np.testing.assert_array_equal(x[1:], y[:-1])  # y is x shifted by one step
    for b in range(2):
      n = int(mask[:, b].sum())
      if n:
        line = next(s for s in lines if len(s) == n + 1 and np.array_equal(s[0], x[0, b]))
        np.testing.assert_array_equal(y[:n, b], line[1:])
        assert not mask[n:, b].any() and not y[n:, b].any()
        seen.append(len(line))
  assert sorted(seen) == [2, 3, 5, 7, 9]  # every line once per epoch
  assert stream.position(4) == (1, 1)


def test_masked_loss_is_per_valid_step_and_ignores_padding():
  """The training loss of a padded batch is -sum log p over real steps / their number
  (loss_elements = D = 3: per step), whatever the padding holds."""
  model, params = _setup('f_rnn_hw')
  config = experiments.get_config('stroke3', 'f_rnn')
  loss_fn = train.make_loss_fn(model, config)
  lines = _lines([4, 6, 3], seed=4)
  x, y, mask = batching.PaddedStream(lines, 3, 3, 8).batch(0)
  loss, metrics = loss_fn(params, x, y, 1.0, jax.random.key(0), mask)
  total = 0.0
  for line in lines:
    out = model.apply({'params': params}, line[:-1, None], line[1:, None])
    total += float(out['log_prob'].sum())
  steps = sum(len(l) - 1 for l in lines)
  np.testing.assert_allclose(loss, -total / steps, rtol=1e-5)
  assert float(metrics['elements']) == 3 * steps
  noisy_x = np.where(mask[..., None] > 0, x, 5.0).astype(np.float32)
  noisy_y = np.where(mask[..., None] > 0, y, -5.0).astype(np.float32)
  noisy_x[0] = x[0]  # the first input of every line is real
  loss2, _ = loss_fn(params, noisy_x, noisy_y, 1.0, jax.random.key(0), mask)
  np.testing.assert_allclose(loss2, loss, rtol=1e-6)


def test_whole_sequence_evaluation_is_nats_per_sequence():
  """tgt_len 0: each line scored whole from a zero state; the reported number is the
  total log-likelihood over lines / number of lines, with its standard error."""
  model, params = _setup('rnn_hier_hw')
  lines = _lines([5, 9, 3, 12, 7], seed=5)
  evaluator = evaluate.Evaluator(model, d_data=3, batch_size=2, tgt_len=0,
                                 normalisation='sequence', pad_multiple=4)
  got = evaluator(params, lines, jax.random.key(0))
  per_line = [float(model.apply({'params': params}, l[:-1, None], l[1:, None])[
      'log_prob'].sum()) for l in lines]
  np.testing.assert_allclose(got['elbo'], np.mean(per_line), rtol=1e-5)
  np.testing.assert_allclose(got['elbo_stderr'], np.std(per_line, ddof=1) / np.sqrt(5),
                             rtol=1e-4)
  assert got['num_steps'] == sum(len(l) - 1 for l in lines)


# ----------------------------------------------------------------------------------
# Configs.

def test_iamondb_reports_validation_as_test():
  config = experiments.get_config('iamondb', 'f_rnn')
  assert config.whole_sequences and config.normalisation == 'sequence'
  assert evaluate.test_split(config) == 'valid'
  assert evaluate.test_split(experiments.get_config('stroke3', 'f_rnn')) == 'test'
  assert (config.batch_size, config.num_steps, config.eval_every) == (32, 20_000, 300)
  assert config.kl_increment == 5e-5 and config.model.n_mix == 5


# ----------------------------------------------------------------------------------
# Drawings.

def test_trajectory_strokes_invert_points_to_steps():
  from reexam_jax import sample  # pylint: disable=g-import-not-at-top
  from reexam_jax.data import handwriting  # pylint: disable=g-import-not-at-top
  # Two strokes: (0,0)-(1,0)-(1,2) then (5,5)-(6,5).
  points = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 2], [0, 5, 5], [1, 6, 5]], np.float64)
  mean, std = np.array([0.5, -0.5]), 2.0
  steps = handwriting.normalise(handwriting.points_to_steps(points), mean, std)
  strokes = sample.trajectory_strokes(steps, mean, std)
  assert len(strokes) == 2
  np.testing.assert_allclose(strokes[0], points[:3, 1:], atol=1e-5)
  np.testing.assert_allclose(strokes[1], points[3:, 1:], atol=1e-5)
