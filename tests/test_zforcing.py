"""The Z-forcing SRNN core (models/cores.ZForcingCore) against a plain numpy loop written
from the spec (§4 srnn_zforce), its parameter count in the reference's handwriting form,
and the optional auxiliary cost (training loss only). Causality, normalisation and
step-wise generation are checked with every registry model (tests/test_models.py,
tests/test_sample.py)."""
import jax
import jax.numpy as jnp
import numpy as np

from reexam_jax import evaluate
from reexam_jax import experiments
from reexam_jax import models
from reexam_jax import parallel
from reexam_jax import train
from reexam_jax.models import cores

T, B, D = 4, 2, 3
KEY = jax.random.key(5)  # the 'latent' stream of every compared call


def _model(aux_weight=0.0):
  cfg = experiments.model_config(name='zf_f_srnn', d_data=D, d_rnn=5, d_emb=4, d_lat=2,
                                 d_mlp=3, zf_aux_weight=aux_weight)
  return models.build_model(cfg, precision='highest')


def _params(model, scale=0.5, seed=0):
  """N(0, scale^2) parameters (zero biases and orthogonal matrices would hide nothing)."""
  shapes = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0), D))
  leaves, tree = jax.tree_util.tree_flatten(shapes)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_unflatten(
      tree, [jnp.asarray(scale * rng.standard_normal(s.shape), jnp.float32) for s in leaves])


def _data(seed=1):
  s = np.random.default_rng(seed).standard_normal((T + 1, B, D)).astype(np.float32)
  return s[:-1], s[1:]


# ----------------------------------------------------------------------------------------
# The spec's computation, step by step in float64 numpy.
# ----------------------------------------------------------------------------------------
def _dense(p, v):
  return v @ np.asarray(p['kernel'], np.float64).T + np.asarray(p['bias'], np.float64)


def _mlp(p, v):
  """Linear -> LReLU (slope 1/3, clamped to [-3, 3]) -> Linear."""
  a = _dense(p['TorchDense_0'], v)
  return _dense(p['TorchDense_1'], np.clip(np.where(a >= 0, a, a / 3), -3, 3))


def _gaussian(p, v):
  out = np.clip(_mlp(p, v), -8, 8)
  return np.split(out, 2, axis=-1)


def _lstm_step(p, inp, h, c):
  g = (inp @ np.asarray(p['w_ih'], np.float64).T + h @ np.asarray(p['w_hh'], np.float64).T
       + np.asarray(p['b_ih'], np.float64) + np.asarray(p['b_hh'], np.float64))
  i, f, gg, o = np.split(g, 4, axis=-1)
  sig = lambda a: 1 / (1 + np.exp(-a))
  c = sig(f) * c + sig(i) * np.tanh(gg)
  return sig(o) * np.tanh(c), c


def _log_normal(v, mu, logvar):
  return -0.5 * (np.log(2 * np.pi) + logvar + (v - mu) ** 2 / np.exp(logvar))


def _numpy_backward(p, y):
  """(H, the input embedding as a float64 function, bwd [T, B, H]) of the core's
  parameters p: the backward LSTM over emb(y) as a numpy loop."""
  hid = p['fwd_cell']['w_hh'].shape[1]
  emb = lambda v: _dense(p['inp_emb']['TorchDense_0'], np.asarray(v, np.float64))
  h, c, bwd = np.zeros((B, hid)), np.zeros((B, hid)), np.zeros((T, B, hid))
  for t in reversed(range(T)):
    h, c = _lstm_step(p['bwd_rnn']['layer_0'], emb(y[t]), h, c)
    bwd[t] = h
  return hid, emb, bwd


def _numpy_zforcing(params, x, y, eps):
  """Spec §4 srnn_zforce with factorised one-Gaussian heads, z from the posterior with
  noise eps [T, B, Z] -> per-step log p(y_t | ...) [T, B, D], KL [T, B], z."""
  p, crit = params['core'], params['output']['crit']
  hid, emb, bwd = _numpy_backward(p, y)
  f, c = np.zeros((B, hid)), np.zeros((B, hid))
  log_py, kl, zs = [], [], []
  for t in range(T):
    mu_p, lv_p = _gaussian(p['prior'], f)
    mu_q, lv_q = _gaussian(p['post'], np.concatenate([bwd[t], f], -1))
    z = mu_q + np.exp(0.5 * lv_q) * eps[t]
    f, c = _lstm_step(p['fwd_cell'], np.concatenate([emb(x[t]), _dense(p['gen_mod'], z)], -1),
                      f, c)
    kl.append((0.5 * (lv_p - lv_q + np.exp(lv_q - lv_p) + (mu_q - mu_p) ** 2 / np.exp(lv_p)
                      - 1)).sum(-1))
    head = lambda name: (f @ np.asarray(crit[f'{name}_kernel'][:, 0], np.float64).T
                         + np.asarray(crit[f'{name}_bias'][:, 0], np.float64))
    log_py.append(_log_normal(y[t], head('mean'), 2 * head('log_std')))
    zs.append(z)
  return np.stack(log_py), np.stack(kl), np.stack(zs)


def _apply(model, params, x, y, latent_source='posterior'):
  out, inter = model.apply({'params': params}, x, y, latent_source=latent_source,
                           rngs={'latent': KEY}, mutable=['intermediates'])
  return out, inter['intermediates']['core']['z'][0]


def test_core_matches_the_spec_step_by_step():
  """The scan core equals the numpy loop given the same noise: the noise is read off a
  first call (eps = (z - mu_q) / sigma_q of the loop), then the same key scores other
  data, where every z_t depends on the new z_<t."""
  model, params = _model(), _params(_model())
  x, y = _data(1)
  _, z0 = _apply(model, params, x, y)
  p = params['core']
  # eps of the first call: invert the loop's posterior along the model's own z.
  hid, emb, bwd = _numpy_backward(p, y)
  f, c, eps = np.zeros((B, hid)), np.zeros((B, hid)), []
  for t in range(T):
    mu_q, lv_q = _gaussian(p['post'], np.concatenate([bwd[t], f], -1))
    z = np.asarray(z0[t], np.float64)
    eps.append((z - mu_q) / np.exp(0.5 * lv_q))
    f, c = _lstm_step(p['fwd_cell'], np.concatenate([emb(x[t]), _dense(p['gen_mod'], z)], -1),
                      f, c)
  eps = np.stack(eps)
  assert 0.3 < eps.std() < 3  # standard-normal-looking noise, not a degenerate read

  x2, y2 = _data(2)
  out, z = _apply(model, params, x2, y2)
  want_lp, want_kl, want_z = _numpy_zforcing(params, x2, y2, eps)
  np.testing.assert_allclose(z, want_z, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['log_prob'], want_lp, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(out['kl'], want_kl, rtol=1e-4, atol=1e-5)
  # ELBO of the chunk, as evaluation computes it (one posterior draw).
  np.testing.assert_allclose(out['log_prob'].sum((0, 2)) - out['kl'].sum(0),
                             want_lp.sum((0, 2)) - want_kl.sum(0), rtol=1e-4)


def test_log_ratio_is_log_prior_minus_log_posterior():
  """The importance weight's latent part equals the loop's log p(z) - log q(z)."""
  model, params = _model(), _params(_model(), seed=3)
  x, y = _data(4)
  out, z = _apply(model, params, x, y)
  p = params['core']
  hid, emb, bwd = _numpy_backward(p, y)
  f, c, want = np.zeros((B, hid)), np.zeros((B, hid)), []
  for t in range(T):
    zt = np.asarray(z[t], np.float64)
    mu_p, lv_p = _gaussian(p['prior'], f)
    mu_q, lv_q = _gaussian(p['post'], np.concatenate([bwd[t], f], -1))
    want.append((_log_normal(zt, mu_p, lv_p) - _log_normal(zt, mu_q, lv_q)).sum(-1))
    f, c = _lstm_step(p['fwd_cell'], np.concatenate([emb(x[t]), _dense(p['gen_mod'], zt)], -1),
                      f, c)
  np.testing.assert_allclose(out['log_ratio'], np.stack(want), rtol=1e-4, atol=1e-4)
  prior_out, _ = _apply(model, params, x, y, latent_source='prior')
  np.testing.assert_array_equal(prior_out['log_ratio'], 0.0)  # z from the prior itself


def test_handwriting_form_has_the_reference_count():
  """Spec §9.4: srnn_zforce with d_rnn 200, d_emb 150, d_mlp 150, d_lat 150 on 3-wide
  steps has 893,571 parameters, of which the heads (pen Linear(200, 1): 201; dx and dy
  GMMs with K = 5: 2 x 3,010) are 6,221: the core is the rest."""
  core = cores.ZForcingCore(d_rnn=200, d_emb=150, d_lat=150, d_mlp=150)
  x = jnp.zeros((2, 1, 3))
  shapes = jax.eval_shape(lambda: core.init({'params': jax.random.key(0),
                                             'latent': jax.random.key(1)}, x, x,
                                            deterministic=True))
  count = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes['params']))
  assert count == 893_571 - 201 - 2 * 3_010


def _loss_and_grads(model, params, x, y):
  config = experiments.get_config('timit', 'zf_f_srnn')
  loss_fn = train.make_loss_fn(model, config)
  return jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, 0.5, jax.random.key(9))


def test_aux_cost_is_off_by_default_and_training_only():
  """Off (the default, zf_aux_weight = 0): no auxiliary net, no term, the loss is NLL +
  w KL. On: extra parameters, a larger loss and other gradients for the latent path,
  while every reported number (NLL, KL, evaluation's ELBO and importance weights) is
  untouched."""
  assert experiments.get_config('timit', 'zf_f_srnn').model.zf_aux_weight == 0.0
  off, on = _model(0.0), _model(1.0)
  params_on = _params(on)
  params_off = dict(params_on, core={k: v for k, v in params_on['core'].items()
                                     if k != 'aux'})
  assert set(params_on['core']) - set(params_off['core']) == {'aux'}
  assert jax.tree_util.tree_structure(params_off) == jax.tree_util.tree_structure(
      jax.eval_shape(lambda: models.init_params(off, jax.random.key(0), D)))
  x, y = _data(6)

  out_off, _ = _apply(off, params_off, x, y)
  assert 'aux_cost' not in out_off
  (loss_off, m_off), g_off = _loss_and_grads(off, params_off, x, y)
  np.testing.assert_allclose(loss_off, (m_off['nll'] + 0.5 * m_off['kl']) / (T * B * D),
                             rtol=1e-6)

  (loss_on, m_on), g_on = _loss_and_grads(on, params_on, x, y)
  assert loss_on > loss_off + 1e-3  # -log N(bwd; aux(z)) > 0 for these random nets
  np.testing.assert_allclose(m_on['nll'], m_off['nll'], rtol=1e-6)  # reported terms equal
  np.testing.assert_allclose(m_on['kl'], m_off['kl'], rtol=1e-6)
  for name in ('post', 'bwd_rnn', 'gen_mod', 'fwd_cell'):  # through z and what made it
    diff = jax.tree_util.tree_map(lambda a, b: jnp.abs(a - b).max(), g_on['core'][name],
                                  g_off['core'][name])
    assert max(jax.tree_util.tree_leaves(diff)) > 1e-6, name

  mask = jnp.ones((T, B))
  score = lambda model, params: evaluate.make_chunk_scorer(model, 4, 'posterior',
                                                                 parallel.make_mesh())(
      params, x, y, mask, jax.random.key(2))
  for a, b in zip(score(on, params_on), score(off, params_off)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
