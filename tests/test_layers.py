"""reexam_jax.layers against independent numpy (float64) implementations of the PyTorch
semantics in spec §1.1-1.3, plus an optional cross-check against torch.nn.LSTM."""
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from reexam_jax import layers


def _init(module, key, *args, **kwargs):
  """module.init under jax.jit (one compilation instead of many eager dispatches)."""
  return jax.jit(lambda k, a: module.init(k, *a, **kwargs))(key, args)


def _apply(module, variables, *args, **kwargs):
  """module.apply under jax.jit; keyword arguments other than rngs are static."""
  rngs = kwargs.pop('rngs', None)
  return jax.jit(lambda v, a, r: module.apply(v, *a, rngs=r, **kwargs))(variables, args, rngs)


def _shapes(module, *args, **kwargs):
  """The parameter tree's shapes and dtypes, without running the initialisers."""
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))['params']


def _count(params):
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params))


def _np(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def _randomise(params, seed, scale=0.5):
  """Replaces every parameter by N(0, scale^2) noise, so that zero-initialised biases and
  orthogonal matrices do not hide mistakes."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_unflatten(
      treedef, [jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype) for l in leaves])


# ----------------------------------------------------------------------------------------
# numpy reference of torch.nn.LSTM (gate order i, f, g, o; two biases).
# ----------------------------------------------------------------------------------------
def _np_lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, h0=None, c0=None):
  """xs [T, B, I] -> hs [T, B, H], (h, c). Follows the torch.nn.LSTM documentation:
    i = s(W_ii x + b_ii + W_hi h + b_hi), f = s(...), g = tanh(...), o = s(...),
    c' = f c + i g, h' = o tanh(c')."""
  xs, w_ih, w_hh, b_ih, b_hh = (np.asarray(a, np.float64) for a in (xs, w_ih, w_hh, b_ih, b_hh))
  hid = w_hh.shape[1]
  batch = xs.shape[1]
  h = np.zeros((batch, hid)) if h0 is None else np.asarray(h0, np.float64)
  c = np.zeros((batch, hid)) if c0 is None else np.asarray(c0, np.float64)
  w_ii, w_if, w_ig, w_io = np.split(w_ih, 4, axis=0)
  w_hi, w_hf, w_hg, w_ho = np.split(w_hh, 4, axis=0)
  b_ii, b_if, b_ig, b_io = np.split(b_ih, 4)
  b_hi, b_hf, b_hg, b_ho = np.split(b_hh, 4)
  hs = []
  for x in xs:
    i = special.expit(x @ w_ii.T + b_ii + h @ w_hi.T + b_hi)
    f = special.expit(x @ w_if.T + b_if + h @ w_hf.T + b_hf)
    g = np.tanh(x @ w_ig.T + b_ig + h @ w_hg.T + b_hg)
    o = special.expit(x @ w_io.T + b_io + h @ w_ho.T + b_ho)
    c = f * c + i * g
    h = o * np.tanh(c)
    hs.append(h)
  return np.stack(hs), (h, c)


def _layer_args(p):
  return p['w_ih'], p['w_hh'], p['b_ih'], p['b_hh']


# ----------------------------------------------------------------------------------------
# LSTM.
# ----------------------------------------------------------------------------------------
def test_lstm_recurrence_matches_numpy():
  rng = np.random.default_rng(0)
  t, b, i, h = 9, 3, 4, 5
  w_ih, w_hh = rng.standard_normal((4 * h, i)), rng.standard_normal((4 * h, h)) * 0.7
  b_ih, b_hh = rng.standard_normal(4 * h), rng.standard_normal(4 * h)
  xs = rng.standard_normal((t, b, i))
  h0, c0 = rng.standard_normal((b, h)), rng.standard_normal((b, h))
  gates_x = (xs @ w_ih.T + b_ih + b_hh).astype(np.float32)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  hs, (h_t, c_t) = layers.lstm_recurrence(gates_x, f32(w_hh), f32(h0), f32(c0))
  ref_hs, (ref_h, ref_c) = _np_lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, h0, c0)
  np.testing.assert_allclose(hs, ref_hs, atol=2e-5)
  np.testing.assert_allclose(h_t, ref_h, atol=2e-5)
  np.testing.assert_allclose(c_t, ref_c, atol=2e-5)
  np.testing.assert_array_equal(hs[-1], h_t)


@pytest.mark.parametrize('orthogonal_hh,with_state', [(True, False), (False, True)])
def test_lstm_layer_matches_numpy(orthogonal_hh, with_state):
  rng = np.random.default_rng(1)
  t, b, i, h = 7, 2, 3, 6
  xs = rng.standard_normal((t, b, i)).astype(np.float32)
  state = None
  if with_state:
    state = tuple(jnp.asarray(rng.standard_normal((b, h)), jnp.float32) for _ in range(2))
  module = layers.LSTMLayer(h, orthogonal_hh=orthogonal_hh)
  params = _randomise(_shapes(module, xs, state), 2)
  hs, (h_t, c_t) = _apply(module, {'params': params}, xs, state)
  ref_hs, (ref_h, ref_c) = _np_lstm_layer(
      xs, *_layer_args(_np(params)), *(state if state is not None else (None, None)))
  assert hs.shape == (t, b, h)
  np.testing.assert_allclose(hs, ref_hs, atol=2e-5)
  np.testing.assert_allclose(h_t, ref_h, atol=2e-5)
  np.testing.assert_allclose(c_t, ref_c, atol=2e-5)


def _np_lstm_loss(args, weights):
  """float64 scalar loss of one layer: <hs, R> + <h_T, r_h> + <c_T, r_c>."""
  xs, w_ih, w_hh, b_ih, b_hh, h0, c0 = args
  hs, (h, c) = _np_lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, h0, c0)
  r, r_h, r_c = weights
  return (hs * r).sum() + (h * r_h).sum() + (c * r_c).sum()


def _fd_grads(fun, args, eps=1e-6):
  """Central finite differences of a float64 numpy function, for every input entry."""
  grads = []
  for k, a in enumerate(args):
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
      plus = [np.array(b, copy=True) for b in args]
      minus = [np.array(b, copy=True) for b in args]
      plus[k][idx] += eps
      minus[k][idx] -= eps
      g[idx] = (fun(plus) - fun(minus)) / (2 * eps)
    grads.append(g)
  return grads


def _random_lstm_args(rng, t, b, i, h):
  """(xs, w_ih, w_hh, b_ih, b_hh, h0, c0) as float32-representable float64 arrays."""
  shapes = [(t, b, i), (4 * h, i), (4 * h, h), (4 * h,), (4 * h,), (b, h), (b, h)]
  return [rng.standard_normal(s).astype(np.float32).astype(np.float64) for s in shapes]


@pytest.mark.parametrize('unroll', [1, 3])
def test_lstm_layer_gradients_match_finite_differences(unroll):
  """The custom VJP of lstm_layer / LSTMLayer against float64 central differences of the
  numpy reference, for every input: xs, both weights, both biases, h0, c0, with
  cotangents on all outputs (hs and the final h, c)."""
  rng = np.random.default_rng(40)
  t, b, i, h = 5, 2, 3, 2
  args = _random_lstm_args(rng, t, b, i, h)
  weights = [rng.standard_normal(s) for s in ((t, b, h), (b, h), (b, h))]
  ref = _fd_grads(lambda a: _np_lstm_loss(a, weights), args)
  w32 = [jnp.asarray(w, jnp.float32) for w in weights]

  def loss(xs, w_ih, w_hh, b_ih, b_hh, h0, c0):
    hs, (h_t, c_t) = layers.lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, h0, c0, unroll=unroll)
    return (hs * w32[0]).sum() + (h_t * w32[1]).sum() + (c_t * w32[2]).sum()

  a32 = [jnp.asarray(a, jnp.float32) for a in args]
  np.testing.assert_allclose(loss(*a32), _np_lstm_loss(args, weights), rtol=1e-5)
  got = jax.jit(jax.grad(loss, argnums=tuple(range(7))))(*a32)
  names = ('xs', 'w_ih', 'w_hh', 'b_ih', 'b_hh', 'h0', 'c0')
  for name, g, r in zip(names, got, ref):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=name)

  # The same gradients through the Flax module (parameters and input).
  module = layers.LSTMLayer(h, unroll=unroll)
  params = {'w_ih': a32[1], 'w_hh': a32[2], 'b_ih': a32[3], 'b_hh': a32[4]}

  def module_loss(params, xs, h0, c0):
    hs, (h_t, c_t) = module.apply({'params': params}, xs, (h0, c0))
    return (hs * w32[0]).sum() + (h_t * w32[1]).sum() + (c_t * w32[2]).sum()

  g_params, g_xs, g_h0, g_c0 = jax.jit(jax.grad(module_loss, argnums=(0, 1, 2, 3)))(
      params, a32[0], a32[5], a32[6])
  for name, g, r in [('xs', g_xs, ref[0]), ('h0', g_h0, ref[5]), ('c0', g_c0, ref[6])] + [
      (n, g_params[n], ref[k]) for k, n in enumerate(names) if n in params]:
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=name)


def test_lstm_recurrence_gradients_match_finite_differences():
  rng = np.random.default_rng(41)
  t, b, h = 6, 3, 2
  gates_x, w_hh = rng.standard_normal((t, b, 4 * h)), rng.standard_normal((4 * h, h))
  h0, c0 = rng.standard_normal((b, h)), rng.standard_normal((b, h))
  args = [a.astype(np.float32).astype(np.float64) for a in (gates_x, w_hh, h0, c0)]
  weights = [rng.standard_normal(s) for s in ((t, b, h), (b, h), (b, h))]
  ref = _fd_grads(lambda a: _np_recurrence_loss(a, weights), args)
  w32 = [jnp.asarray(w, jnp.float32) for w in weights]

  def loss(gx, whh, hh, cc):
    hs, (h_t, c_t) = layers.lstm_recurrence(gx, whh, hh, cc)
    return (hs * w32[0]).sum() + (h_t * w32[1]).sum() + (c_t * w32[2]).sum()

  got = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(*[jnp.asarray(a, jnp.float32)
                                                        for a in args])
  for name, g, r in zip(('gates_x', 'w_hh', 'h0', 'c0'), got, ref):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=name)


def _np_recurrence_loss(args, weights):
  """Loss of the recurrence alone: gates_x replaces x W_ih^T + b_ih + b_hh."""
  gates_x, w_hh, h, c = args
  hs = []
  for gx in gates_x:
    gi, gf, gg, go = np.split(gx + h @ w_hh.T, 4, axis=-1)
    c = special.expit(gf) * c + special.expit(gi) * np.tanh(gg)
    h = special.expit(go) * np.tanh(c)
    hs.append(h)
  r, r_h, r_c = weights
  return (np.stack(hs) * r).sum() + (h * r_h).sum() + (c * r_c).sum()


def test_lstm_layer_extra_batch_dims():
  """xs [T, B1, B2, I] (e.g. the hier models' T x B x D sequences) = the flattened batch."""
  rng = np.random.default_rng(42)
  t, b1, b2, i, h = 4, 2, 3, 3, 4
  args = _random_lstm_args(rng, t, b1 * b2, i, h)
  xs, w_ih, w_hh, b_ih, b_hh, h0, c0 = [jnp.asarray(a, jnp.float32) for a in args]
  hs, (h_t, c_t) = jax.jit(layers.lstm_layer)(
      xs.reshape(t, b1, b2, i), w_ih, w_hh, b_ih, b_hh, h0.reshape(b1, b2, h),
      c0.reshape(b1, b2, h))
  assert hs.shape == (t, b1, b2, h) and h_t.shape == c_t.shape == (b1, b2, h)
  ref_hs, (ref_h, ref_c) = _np_lstm_layer(*args)
  np.testing.assert_allclose(hs.reshape(t, b1 * b2, h), ref_hs, atol=2e-5)
  np.testing.assert_allclose(h_t.reshape(b1 * b2, h), ref_h, atol=2e-5)
  np.testing.assert_allclose(c_t.reshape(b1 * b2, h), ref_c, atol=2e-5)


@pytest.mark.parametrize('i,h', [(1, 1), (3, 5), (512, 256), (128, 128)])
def test_lstm_layer_param_shapes_and_count(i, h):
  """4H(I+H) + 8H parameters, stored in PyTorch's layout (spec §1.1)."""
  xs = jnp.zeros((2, 1, i))
  params = _shapes(layers.LSTMLayer(h), xs)
  assert {k: v.shape for k, v in params.items()} == {
      'w_ih': (4 * h, i), 'w_hh': (4 * h, h), 'b_ih': (4 * h,), 'b_hh': (4 * h,)}
  assert _count(params) == 4 * h * (i + h) + 8 * h


@pytest.mark.parametrize('num_layers', [1, 3])
def test_lstm_stack_param_count(num_layers):
  i, h = 7, 4
  params = _shapes(layers.LSTM(h, num_layers), jnp.zeros((2, 1, i)), deterministic=True)
  assert sorted(params) == [f'layer_{l}' for l in range(num_layers)]
  expected = 4 * h * (i + h) + 8 * h + (num_layers - 1) * (4 * h * (h + h) + 8 * h)
  assert _count(params) == expected


def test_lstm_layer_orthogonal_hh():
  """W_hh [4H, H] has orthonormal columns (W^T W = I); everything else U(±1/sqrt(H))."""
  h = 32
  params = _init(layers.LSTMLayer(h), jax.random.PRNGKey(3), jnp.zeros((2, 1, 10)))['params']
  w = np.asarray(params['w_hh'], np.float64)
  np.testing.assert_allclose(w.T @ w, np.eye(h), atol=1e-5)
  # Not a trivially orthogonal matrix (e.g. a slice of the identity).
  assert np.abs(w).max() < 0.9
  bound = 1 / math.sqrt(h)
  for name in ('w_ih', 'b_ih', 'b_hh'):
    assert np.abs(params[name]).max() <= bound


def test_lstm_layer_uniform_init():
  """Without orthogonal_hh every tensor is U(-1/sqrt(H), 1/sqrt(H))."""
  h, i = 64, 40
  params = _init(layers.LSTMLayer(h, orthogonal_hh=False),
      jax.random.PRNGKey(4), jnp.zeros((2, 1, i)))['params']
  bound = 1 / math.sqrt(h)
  for name, p in params.items():
    p = np.asarray(p, np.float64).ravel()
    assert np.abs(p).max() <= bound, name
    assert np.abs(p).max() > 0.9 * bound, name
    # Kolmogorov-Smirnov against the uniform law on [-bound, bound].
    assert stats.kstest(p, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-4, name
  # Independent draws for different tensors.
  assert not np.allclose(params['b_ih'], params['b_hh'])


def test_lstm_layer_orthogonal_differs_from_uniform():
  h = 16
  xs = jnp.zeros((2, 1, 3))
  w = np.asarray(_init(layers.LSTMLayer(h, orthogonal_hh=False),
      jax.random.PRNGKey(5), xs)['params']['w_hh'], np.float64)
  assert not np.allclose(w.T @ w, np.eye(h), atol=1e-2)


def _stack_params_np(params, num_layers):
  return [_layer_args(_np(params[f'layer_{l}'])) for l in range(num_layers)]


@pytest.mark.parametrize('num_layers', [1, 3])
def test_lstm_stack_matches_numpy_deterministic(num_layers):
  rng = np.random.default_rng(6)
  xs = rng.standard_normal((6, 3, 4)).astype(np.float32)
  module = layers.LSTM(5, num_layers, dropout=0.5)
  params = _randomise(_shapes(module, xs, deterministic=True), 7)
  got, states = _apply(module, {'params': params}, xs, deterministic=True)
  ref = xs
  for args, (h, c) in zip(_stack_params_np(params, num_layers), states):
    ref, (h_ref, c_ref) = _np_lstm_layer(ref, *args)
    np.testing.assert_allclose(h, h_ref, atol=3e-5)  # every layer's final state
    np.testing.assert_allclose(c, c_ref, atol=3e-5)
  np.testing.assert_allclose(got, ref, atol=3e-5)
  # Deterministic with dropout 0.5 is the same as dropout 0.
  same, _ = _apply(layers.LSTM(5, num_layers, dropout=0.0), {'params': params}, xs,
                   deterministic=True)
  np.testing.assert_allclose(got, same, atol=1e-6)


def test_lstm_stack_continues_from_its_final_states():
  """Steps fed one at a time with the returned states (generation) give the outputs of
  the whole sequence at once."""
  xs = np.random.default_rng(5).standard_normal((4, 3, 2)).astype(np.float32)
  module = layers.LSTM(5, 2)
  params = {'params': _randomise(_shapes(module, xs, deterministic=True), 6)}
  whole, final = _apply(module, params, xs, deterministic=True)
  step = jax.jit(lambda x, s: module.apply(params, x[None], deterministic=True,
                                           initial_states=s))
  states, outs = None, []
  for x in xs:
    out, states = step(x, states)
    outs.append(out[0])
  np.testing.assert_allclose(np.stack(outs), whole, atol=1e-6)
  for a, b in zip(jax.tree.leaves(states), jax.tree.leaves(final)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_lstm_stack_initial_states_respected():
  rng = np.random.default_rng(8)
  b, h, num_layers = 3, 5, 2
  xs = rng.standard_normal((4, b, 2)).astype(np.float32)
  module = layers.LSTM(h, num_layers)
  params = _randomise(_shapes(module, xs, deterministic=True), 9)
  states = [tuple(rng.standard_normal((b, h)).astype(np.float32) for _ in range(2))
            for _ in range(num_layers)]
  got, _ = _apply(module, {'params': params}, xs, deterministic=True,
                  initial_states=[tuple(map(jnp.asarray, s)) for s in states])
  ref = xs
  for args, (h0, c0) in zip(_stack_params_np(params, num_layers), states):
    ref, _ = _np_lstm_layer(ref, *args, h0, c0)
  np.testing.assert_allclose(got, ref, atol=3e-5)
  zero, _ = _apply(module, {'params': params}, xs, deterministic=True)
  assert not np.allclose(got, zero, atol=1e-3)
  # Zero initial states are the default.
  zeros = [(jnp.zeros((b, h)), jnp.zeros((b, h)))] * num_layers
  np.testing.assert_allclose(
      _apply(module, {'params': params}, xs, deterministic=True, initial_states=zeros)[0],
      zero, atol=1e-6)


def test_lstm_stack_dropout_only_between_layers():
  """With deterministic=False: no dropout on the input or after the last layer; the input
  of layer l > 0 is dropout(output of layer l - 1), with a fresh Bernoulli(1-p) mask and
  1/(1-p) scaling."""
  rng = np.random.default_rng(10)
  p_drop, h, num_layers = 0.5, 8, 3
  xs = rng.standard_normal((5, 4, 3)).astype(np.float32)
  module = layers.LSTM(h, num_layers, dropout=p_drop)
  params = _randomise(_shapes(module, xs, deterministic=True), 11)
  det, _ = _apply(module, {'params': params}, xs, deterministic=True)
  (out, _), state = _apply(module, {'params': params}, xs, deterministic=False,
                           rngs={'dropout': jax.random.PRNGKey(1)},
                           capture_intermediates=True, mutable=['intermediates'])
  inter = state['intermediates']
  assert not np.allclose(out, det, atol=1e-3)
  # Layer 0 reads the raw input: its outputs equal the deterministic ones.
  layer0_out = inter['layer_0']['__call__'][0][0]
  ref0, _ = _np_lstm_layer(xs, *_layer_args(_np(params['layer_0'])))
  np.testing.assert_allclose(layer0_out, ref0, atol=2e-5)
  # Exactly num_layers - 1 dropout modules.
  dropouts = sorted(k for k in inter if k.startswith('Dropout'))
  assert len(dropouts) == num_layers - 1, sorted(inter)
  prev = np.asarray(layer0_out, np.float64)
  masks = []
  for l in range(1, num_layers):
    dropped = np.asarray(inter[dropouts[l - 1]]['__call__'][0], np.float64)
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], prev[kept] / (1 - p_drop), rtol=1e-5)
    assert 0.3 < kept.mean() < 0.7
    masks.append(kept)
    # Layer l consumes exactly the dropped-out activations.
    prev, _ = _np_lstm_layer(dropped, *_layer_args(_np(params[f'layer_{l}'])))
    np.testing.assert_allclose(inter[f'layer_{l}']['__call__'][0][0], prev, atol=3e-5)
  # The network output is the last layer's output, undropped.
  np.testing.assert_allclose(out, prev, atol=3e-5)
  assert not np.array_equal(masks[0], masks[1])


def test_lstm_single_layer_has_no_dropout():
  xs = np.random.default_rng(12).standard_normal((5, 4, 3)).astype(np.float32)
  module = layers.LSTM(6, 1, dropout=0.9)
  params = _randomise(_shapes(module, xs, deterministic=True), 12)
  det, _ = _apply(module, {'params': params}, xs, deterministic=True)
  stoch, _ = _apply(module, {'params': params}, xs, deterministic=False,
                    rngs={'dropout': jax.random.PRNGKey(3)})
  np.testing.assert_array_equal(det, stoch)


@pytest.mark.parametrize('num_layers,with_state', [(1, False), (2, True)])
def test_lstm_matches_torch(num_layers, with_state):
  torch = pytest.importorskip('torch')
  rng = np.random.default_rng(13)
  t, b, i, h = 8, 3, 5, 7
  xs = rng.standard_normal((t, b, i)).astype(np.float32)
  module = layers.LSTM(h, num_layers)
  params = _init(module, jax.random.PRNGKey(14), xs, deterministic=True)['params']
  params = flax.core.unfreeze(params)
  # Keep the init's orthogonal W_hh, but make the (small) biases larger.
  for l in range(num_layers):
    for name in ('b_ih', 'b_hh'):
      params[f'layer_{l}'][name] = jnp.asarray(rng.standard_normal(4 * h), jnp.float32)
  states = None
  if with_state:
    states = [tuple(rng.standard_normal((b, h)).astype(np.float32) for _ in range(2))
              for _ in range(num_layers)]
  got, _ = _apply(module, {'params': params}, xs, deterministic=True,
                  initial_states=None if states is None else
                  [tuple(map(jnp.asarray, s)) for s in states])
  ref_lstm = torch.nn.LSTM(i, h, num_layers=num_layers)
  with torch.no_grad():
    for l in range(num_layers):
      for name in ('w_ih', 'w_hh', 'b_ih', 'b_hh'):
        torch_name = name.replace('w_', 'weight_').replace('b_', 'bias_') + f'_l{l}'
        getattr(ref_lstm, torch_name).copy_(torch.from_numpy(
            np.array(params[f'layer_{l}'][name])))
    if states is None:
      ref, _ = ref_lstm(torch.from_numpy(xs))
    else:
      h0 = torch.from_numpy(np.stack([s[0] for s in states]))
      c0 = torch.from_numpy(np.stack([s[1] for s in states]))
      ref, _ = ref_lstm(torch.from_numpy(xs), (h0, c0))
  np.testing.assert_allclose(got, ref.numpy(), atol=2e-5)
  # Same number of parameters as torch's module.
  assert _count(params) == sum(p.numel() for p in ref_lstm.parameters())


# ----------------------------------------------------------------------------------------
# Dense layers and initialisers.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('fan_in,features', [(1, 300), (200, 64)])
def test_torch_dense(fan_in, features):
  rng = np.random.default_rng(15)
  x = rng.standard_normal((5, 2, fan_in)).astype(np.float32)
  module = layers.TorchDense(features)
  params = _init(module, jax.random.PRNGKey(16), x)['params']
  assert params['kernel'].shape == (features, fan_in)  # PyTorch's [out, in]
  assert params['bias'].shape == (features,)
  bound = 1 / math.sqrt(fan_in)
  for name in ('kernel', 'bias'):
    a = np.abs(np.asarray(params[name]))
    assert a.max() <= bound
    assert a.max() > 0.8 * bound
  got = _apply(module, {'params': params}, x)
  p = _np(params)
  np.testing.assert_allclose(got, x @ p['kernel'].T + p['bias'], rtol=1e-5, atol=1e-5)
  no_bias = layers.TorchDense(features, use_bias=False)
  params_nb = _init(no_bias, jax.random.PRNGKey(16), x)['params']
  assert list(params_nb) == ['kernel']
  np.testing.assert_allclose(_apply(no_bias, {'params': params_nb}, x),
                             x @ np.asarray(params_nb['kernel'], np.float64).T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape,bound', [
    ((256, 200, 20), 0.0158),   # F-RNN speech GM weight [H, D, K]
    ((256, 200, 1), 0.0707),    # F-SRNN speech
    ((1024, 1, 20), 0.2236),    # RNN-flat
    ((4096, 1, 1), 1.0),        # SRNN-flat
    ((88, 256), 1 / 16),        # Bernoulli weight [d_tgt, d_inp]
    ((10, 140, 64, 1), 1 / math.sqrt(140 * 64)),  # NADE W0 [D, H+D-1, d_nade, 1]
    ((10, 64, 64), 1 / 64),     # NADE W_l
])
def test_torch_kaiming_uniform_bound(shape, bound):
  """bound = 1/sqrt(prod(shape[1:])) (spec §1.2)."""
  expected = 1 / math.sqrt(math.prod(shape[1:]))
  assert abs(expected - bound) < 5e-5  # the spec's rounded examples
  w = np.asarray(layers.torch_kaiming_uniform(jax.random.PRNGKey(17), shape))
  assert w.shape == shape and w.dtype == np.float32
  assert np.abs(w).max() <= expected
  assert np.abs(w).max() > 0.99 * expected
  assert abs(w.mean()) < 0.05 * expected
  np.testing.assert_allclose(w.std(), expected / math.sqrt(3), rtol=0.05)


def test_torch_kaiming_uniform_matches_torch_bound():
  torch = pytest.importorskip('torch')
  for shape in [(64, 200, 20), (512, 1, 1), (88, 256)]:
    t = torch.empty(shape)
    torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))
    ours = np.asarray(layers.torch_kaiming_uniform(jax.random.PRNGKey(0), shape))
    np.testing.assert_allclose(np.abs(ours).max(), t.abs().max().item(), rtol=0.02)


def test_lrelu_values():
  x = np.array([-100., -10., -9.5, -9., -6., -3., -1.5, 0., 0.5, 1., 2.9, 3., 3.1, 50.],
               np.float32)
  expected = np.array([-3., -3., -3., -3., -2., -1., -0.5, 0., 0.5, 1., 2.9, 3., 3., 3.],
                      np.float32)
  np.testing.assert_allclose(layers.lrelu(x), expected, rtol=1e-6)
  rng = np.random.default_rng(18)
  x = rng.uniform(-15, 15, 1000).astype(np.float32)
  np.testing.assert_allclose(layers.lrelu(x), np.clip(np.where(x >= 0, x, x / 3), -3, 3),
                             rtol=1e-6)
  # Gradient: 1 on (0, 3), 1/3 on (-9, 0), 0 beyond the clamp.
  g = jax.vmap(jax.grad(layers.lrelu))(jnp.array([-20., -5., 1., 10.]))
  np.testing.assert_allclose(g, [0., 1 / 3, 1., 0.], rtol=1e-6)


# ----------------------------------------------------------------------------------------
# Output heads.
# ----------------------------------------------------------------------------------------
def _np_gmm(y, mean, log_std, logits):
  log_w = logits - special.logsumexp(logits, axis=-1, keepdims=True)
  return special.logsumexp(
      log_w + stats.norm.logpdf(y[..., None], mean, np.exp(log_std)), axis=-1)


@pytest.mark.parametrize('per_element', [False, True])
@pytest.mark.parametrize('k', [1, 4])
def test_gmm_head_matches_numpy(per_element, k):
  rng = np.random.default_rng(19)
  t, b, d, d_inp = 3, 2, 5, 6
  inp_shape = (t, b, d, d_inp) if per_element else (t, b, d_inp)
  inp = rng.standard_normal(inp_shape).astype(np.float32)
  y = rng.standard_normal((t, b, d)).astype(np.float32)
  module = layers.GMMHead(d, k, per_element=per_element)
  params = _init(module, jax.random.PRNGKey(20), inp)['params']
  # Stored as [D, K, d_inp] (the reference's [d_inp, D, K] transposed, with its init
  # bound 1/sqrt(D K), spec §1.2-1.3) and [D, K]; 3(d_inp D K + D K) parameters.
  names = [f'{n}_{s}' for n in ('mean', 'log_std', 'logits') for s in ('kernel', 'bias')]
  assert sorted(params) == sorted(names)
  for n in ('mean', 'log_std', 'logits'):
    assert params[f'{n}_kernel'].shape == (d, k, d_inp)
    assert params[f'{n}_bias'].shape == (d, k)
    np.testing.assert_array_equal(params[f'{n}_bias'], 0.0)
    assert np.abs(params[f'{n}_kernel']).max() <= 1 / math.sqrt(d * k)
  assert _count(params) == 3 * (d_inp * d * k + d * k)
  params = _randomise(params, 21, scale=0.3)
  dist = _apply(module, {'params': params}, inp)
  got = dist.log_prob(y)
  assert got.shape == (t, b, d)
  # Element i alone, from its own input (generation): element i of all of them.
  i = 3
  one = _apply(module, {'params': params}, inp[..., i, :] if per_element else inp, element=i)
  for a, b_ in zip(one, dist):
    np.testing.assert_allclose(a, b_[..., i, :], rtol=1e-6, atol=1e-6)
  p = _np(params)
  x64 = inp.astype(np.float64)
  outs = []
  for n in ('mean', 'log_std', 'logits'):
    w, bias = p[f'{n}_kernel'].transpose(2, 0, 1), p[f'{n}_bias']  # -> [d_inp, D, K]
    if per_element:
      # element i uses its own input inp[..., i, :] and its own weights w[:, i, :].
      o = np.stack([x64[..., i, :] @ w[:, i, :] for i in range(d)], axis=-2)
    else:
      o = np.stack([x64 @ w[:, i, :] for i in range(d)], axis=-2)
    outs.append(o + bias)
  ref = _np_gmm(y.astype(np.float64), *outs)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('per_element', [False, True])
def test_bernoulli_head_matches_numpy(per_element):
  rng = np.random.default_rng(22)
  t, b, d, d_inp = 4, 3, 6, 5
  inp_shape = (t, b, d, d_inp) if per_element else (t, b, d_inp)
  inp = rng.standard_normal(inp_shape).astype(np.float32)
  y = (rng.random((t, b, d)) < 0.5).astype(np.float32)
  module = layers.BernoulliHead(d, per_element=per_element)
  params = _init(module, jax.random.PRNGKey(23), inp)['params']
  assert params['kernel'].shape == (d, d_inp)
  assert params['bias'].shape == (d,)
  np.testing.assert_array_equal(params['bias'], 0.0)
  assert np.abs(params['kernel']).max() <= 1 / math.sqrt(d_inp)
  assert _count(params) == d * d_inp + d
  params = _randomise(params, 24, scale=1.0)
  dist = _apply(module, {'params': params}, inp)
  got = dist.log_prob(y)
  assert got.shape == (t, b, d)
  i = 2
  one = _apply(module, {'params': params}, inp[..., i, :] if per_element else inp, element=i)
  np.testing.assert_allclose(one.logits, dist.logits[..., i], rtol=1e-6, atol=1e-6)
  p = _np(params)
  x64 = inp.astype(np.float64)
  if per_element:
    logits = np.einsum('tbid,id->tbi', x64, p['kernel']) + p['bias']
    logits_loop = np.stack([x64[..., i, :] @ p['kernel'][i] for i in range(d)], -1) + p['bias']
    np.testing.assert_allclose(logits, logits_loop)
  else:
    logits = x64 @ p['kernel'].T + p['bias']
  ref = np.where(y == 1, np.log(special.expit(logits)), np.log(special.expit(-logits)))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_make_head():
  assert isinstance(layers.make_head('gmm', 3, 5), layers.GMMHead)
  head = layers.make_head('bernoulli', 3, 5, per_element=True)
  assert isinstance(head, layers.BernoulliHead) and head.per_element
  with pytest.raises(ValueError):
    layers.make_head('gaussian', 3, 5)


# ----------------------------------------------------------------------------------------
# MLP and input embedding.
# ----------------------------------------------------------------------------------------
def test_mlp_without_hidden_is_one_linear_layer():
  rng = np.random.default_rng(25)
  x = rng.standard_normal((4, 3, 10)).astype(np.float32)
  module = layers.MLP((), 6, dropout=0.5)
  params = _init(module, jax.random.PRNGKey(26), x, deterministic=True)['params']
  leaves = jax.tree_util.tree_leaves(params)
  assert len(leaves) == 2 and _count(params) == 10 * 6 + 6
  (dense,) = params.values()
  got = _apply(module, {'params': params}, x, deterministic=True)
  p = _np(dense)
  np.testing.assert_allclose(got, x @ p['kernel'].T + p['bias'], rtol=1e-5, atol=1e-5)
  # With dropout active, the dropout acts on the input (zeroed inputs, 2x scaling).
  out = _apply(module, {'params': params}, x, deterministic=False,
                     rngs={'dropout': jax.random.PRNGKey(0)})
  assert not np.allclose(out, got, atol=1e-3)


def test_mlp_with_hidden_matches_numpy():
  rng = np.random.default_rng(27)
  x = rng.standard_normal((4, 3, 10)).astype(np.float32) * 3
  module = layers.MLP((7,), 6)
  params = _randomise(_shapes(module, x, deterministic=True), 29, scale=1.0)  # large enough to reach the LReLU clamp
  got = _apply(module, {'params': params}, x, deterministic=True)
  d0, d1 = (_np(params[k]) for k in sorted(params))
  assert d0['kernel'].shape == (7, 10) and d1['kernel'].shape == (6, 7)
  hid = x @ d0['kernel'].T + d0['bias']
  assert (np.abs(hid) > 9).any()  # the clamp matters
  hid = np.clip(np.where(hid >= 0, hid, hid / 3), -3, 3)
  np.testing.assert_allclose(got, hid @ d1['kernel'].T + d1['bias'], rtol=1e-5, atol=1e-5)


def test_input_embedding_is_dense_then_dropout():
  rng = np.random.default_rng(30)
  x = rng.standard_normal((3, 2, 4)).astype(np.float32)
  module = layers.InputEmbedding(8, dropout=0.5)
  params = _init(module, jax.random.PRNGKey(31), x, deterministic=True)['params']
  (dense,) = params.values()
  p = _np(dense)
  lin = x @ p['kernel'].T + p['bias']
  np.testing.assert_allclose(_apply(module, {'params': params}, x, deterministic=True), lin,
                             rtol=1e-5, atol=1e-5)
  out = np.asarray(_apply(module, {'params': params}, x, deterministic=False,
                                rngs={'dropout': jax.random.PRNGKey(1)}), np.float64)
  kept = out != 0
  assert 0.2 < kept.mean() < 0.8
  np.testing.assert_allclose(out[kept], 2 * lin[kept], rtol=1e-5)


@pytest.mark.parametrize('keep', [0.5, 0.75, 0.9375, 0.3])
def test_bernoulli_mask_is_bernoulli(keep):
  """Rate, independence of neighbours (which share a random word) and odd sizes. 0.3
  has no exact k-bit form and takes jax.random.bernoulli."""
  shape = (1001, 37)  # 37,037 elements: not a multiple of any fields-per-word count
  mask = np.asarray(layers.bernoulli_mask(jax.random.key(3), keep, shape)).ravel()
  n = mask.size
  assert mask.shape == (n,) and n == 37037
  # the kept count is Binomial(n, keep): a two-sided test at the 1e-4 level
  assert stats.binomtest(int(mask.sum()), n, keep).pvalue > 1e-4
  # neighbours in the flattened order are independent: P(both kept) = keep^2
  both = int((mask[:-1] & mask[1:]).sum())
  assert stats.binomtest(both, n - 1, keep * keep).pvalue > 1e-4
  # a different key gives a different mask
  other = np.asarray(layers.bernoulli_mask(jax.random.key(4), keep, shape)).ravel()
  assert (other != mask).any()


def test_dropout_scales_kept_values_and_is_identity_when_deterministic():
  x = jnp.arange(1, 4097, dtype=jnp.float32).reshape(64, 64)
  drop = layers.Dropout(0.5)
  assert (drop.apply({}, x, deterministic=True) == x).all()
  out = np.asarray(drop.apply({}, x, deterministic=False,
                              rngs={'dropout': jax.random.key(0)}))
  kept = out != 0
  np.testing.assert_array_equal(out[kept], 2 * np.asarray(x)[kept])
  assert 0.45 < kept.mean() < 0.55
