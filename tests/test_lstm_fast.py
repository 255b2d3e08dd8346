"""The custom-VJP LSTM (layers.lstm_recurrence, layers.lstm_layer) against a plain
`jax.lax.scan` implementation of torch.nn.LSTM differentiated by JAX's own autodiff:
outputs, final state and gradients w.r.t. inputs, weights, biases and initial state."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reexam_jax import layers

RTOL = 1e-5


def _ref_layer(xs, w_ih, w_hh, b_ih, b_hh, h0, c0):
  """torch.nn.LSTM semantics, gate order (i, f, g, o), the simplest possible scan."""
  def step(carry, x):
    h, c = carry
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # [B, 4H]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h

  (h, c), hs = jax.lax.scan(step, (h0, c0), xs)
  return hs, (h, c)


def _ref_recurrence(gates_x, w_hh, h0, c0):
  """The recurrence alone: gates_x [T, B, 4H] enters through W_ih = I and zero biases."""
  hid = w_hh.shape[1]
  eye = jnp.eye(4 * hid, dtype=gates_x.dtype)
  zero_b = jnp.zeros((4 * hid,), gates_x.dtype)
  return _ref_layer(gates_x, eye, w_hh, zero_b, zero_b, h0, c0)


def _inputs(seed, t, b, i, h, scale=0.5):
  rng = np.random.default_rng(seed)
  arr = lambda *shape: jnp.asarray(scale * rng.standard_normal(shape), jnp.float32)
  return dict(xs=arr(t, b, i), w_ih=arr(4 * h, i), w_hh=arr(4 * h, h), b_ih=arr(4 * h),
              b_hh=arr(4 * h), h0=arr(b, h), c0=arr(b, h))


def _loss(fn, seed_shape):
  """A loss that uses every output (all hs and both final states) with random weights,
  so each cotangent path of the VJP is exercised."""
  rng = np.random.default_rng(123)
  t, b, h = seed_shape
  w_hs = jnp.asarray(rng.standard_normal((t, b, h)), jnp.float32)
  w_h = jnp.asarray(rng.standard_normal((b, h)), jnp.float32)
  w_c = jnp.asarray(rng.standard_normal((b, h)), jnp.float32)

  def loss(*args):
    hs, (h_t, c_t) = fn(*args)
    return (hs * w_hs).sum() + (h_t * w_h).sum() + (c_t * w_c).sum()
  return loss


def _assert_close(actual, expected, name):
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  scale = max(np.abs(expected).max(), 1e-6)
  np.testing.assert_allclose(actual / scale, expected / scale, rtol=0, atol=RTOL,
                             err_msg=name)


@pytest.mark.parametrize('t,b,i,h,remat_chunk', [
    (1, 1, 1, 1, 0), (7, 3, 5, 4, 0), (23, 4, 16, 32, 0),
    (20, 3, 5, 4, 5),    # rematerialised: whole segments only
    (23, 4, 16, 32, 5),  # four segments and a shorter rest
])
def test_lstm_layer_values_and_grads(t, b, i, h, remat_chunk):
  p = _inputs(0, t, b, i, h)
  names = ('xs', 'w_ih', 'w_hh', 'b_ih', 'b_hh', 'h0', 'c0')
  args = tuple(p[n] for n in names)
  layer = functools.partial(layers.lstm_layer, remat_chunk=remat_chunk)
  fast = jax.jit(layer)
  hs, (h_t, c_t) = fast(*args)
  ref_hs, (ref_h, ref_c) = _ref_layer(*args)
  _assert_close(hs, ref_hs, 'hs')
  _assert_close(h_t, ref_h, 'h_T')
  _assert_close(c_t, ref_c, 'c_T')

  argnums = tuple(range(len(names)))
  grads = jax.jit(jax.grad(_loss(layers.lstm_layer, (t, b, h)), argnums))(*args)
  ref_grads = jax.grad(_loss(_ref_layer, (t, b, h)), argnums)(*args)
  for name, g, r in zip(names, grads, ref_grads):
    assert g.shape == r.shape, name
    _assert_close(g, r, f'd{name}')


def test_rematerialised_layer_saves_activation_memory():
  """The remat option is not a no-op: XLA's own buffer accounting of the compiled
  gradient shows far less temporary memory for a long sequence."""
  t, b, i, h = 400, 8, 8, 64
  p = _inputs(2, t, b, i, h)
  args = tuple(p[n] for n in ('xs', 'w_ih', 'w_hh', 'b_ih', 'b_hh', 'h0', 'c0'))

  def temp_bytes(remat_chunk):
    layer = functools.partial(layers.lstm_layer, remat_chunk=remat_chunk)
    grad = jax.jit(jax.grad(lambda *a: layer(*a)[0].sum(), (0, 1, 2)))
    return grad.lower(*args).compile().memory_analysis().temp_size_in_bytes

  plain, remat = temp_bytes(0), temp_bytes(20)
  activations = 6 * t * b * h * 4  # the six [T, B, H] float32 arrays the plain VJP keeps
  assert plain >= activations
  assert remat < plain - activations / 2, (plain, remat)


@pytest.mark.parametrize('rows', [layers.TB_MIN_ROWS - 1, layers.TB_MIN_ROWS])
def test_matmul_tb_both_orientations(rows):
  """The weight-gradient product, computed directly below TB_MIN_ROWS rows and as a
  transposed product above, against numpy."""
  rng = np.random.default_rng(rows)
  a, b = rng.standard_normal((rows, 1, 12)), rng.standard_normal((rows, 1, 5))  # [T, B, .]
  got = layers._matmul_tb(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
  np.testing.assert_allclose(got, np.einsum('tbm,tbn->mn', a, b), rtol=1e-4, atol=1e-4)


def test_lstm_recurrence_values_and_grads():
  t, b, h = 11, 3, 6
  p = _inputs(1, t, b, 4 * h, h)
  gates_x = p['xs']  # [T, B, 4H]
  args = (gates_x, p['w_hh'], p['h0'], p['c0'])
  hs, (h_t, c_t) = jax.jit(layers.lstm_recurrence)(*args)
  ref_hs, (ref_h, ref_c) = _ref_recurrence(*args)
  _assert_close(hs, ref_hs, 'hs')
  _assert_close(h_t, ref_h, 'h_T')
  _assert_close(c_t, ref_c, 'c_T')
  grads = jax.grad(_loss(layers.lstm_recurrence, (t, b, h)), (0, 1, 2, 3))(*args)
  ref_grads = jax.grad(_loss(_ref_recurrence, (t, b, h)), (0, 1, 2, 3))(*args)
  for name, g, r in zip(('gates_x', 'w_hh', 'h0', 'c0'), grads, ref_grads):
    _assert_close(g, r, f'd{name}')


def test_lstm_layer_extra_batch_dims_and_broadcast_state():
  """Hier models pass [T, N, I] inputs with a state broadcast from a learned [H] vector;
  the gradient w.r.t. that vector sums over the batch."""
  t, b, i, h = 5, 6, 3, 4
  p = _inputs(2, t, b, i, h)
  init_h, init_c = p['h0'][0], p['c0'][0]  # [H]

  def run(fn, xs, init_h, init_c):
    state = (jnp.broadcast_to(init_h, (b, h)), jnp.broadcast_to(init_c, (b, h)))
    hs, _ = fn(xs, p['w_ih'], p['w_hh'], p['b_ih'], p['b_hh'], *state)
    return jnp.sum(jnp.sin(hs))

  g = jax.grad(lambda *a: run(layers.lstm_layer, *a), (0, 1, 2))(p['xs'], init_h, init_c)
  r = jax.grad(lambda *a: run(_ref_layer, *a), (0, 1, 2))(p['xs'], init_h, init_c)
  for name, gg, rr in zip(('xs', 'init_h', 'init_c'), g, r):
    _assert_close(gg, rr, f'd{name}')

  # [T, B1, B2, I] inputs: extra batch dims are flattened and restored.
  xs4 = p['xs'].reshape(t, 2, 3, i)
  zeros = jnp.zeros((2, 3, h))
  hs4, (h4, _) = layers.lstm_layer(xs4, p['w_ih'], p['w_hh'], p['b_ih'], p['b_hh'],
                                   zeros, zeros)
  hs2, (h2, _) = _ref_layer(p['xs'], p['w_ih'], p['w_hh'], p['b_ih'], p['b_hh'],
                            jnp.zeros((b, h)), jnp.zeros((b, h)))
  assert hs4.shape == (t, 2, 3, h) and h4.shape == (2, 3, h)
  _assert_close(hs4.reshape(t, b, h), hs2, 'hs (4-D input)')
  _assert_close(h4.reshape(b, h), h2, 'h_T (4-D input)')


def test_lstm_module_uses_fast_path_with_same_grads():
  """LSTMLayer (flax) against the reference with the module's own parameters."""
  t, b, i, h = 9, 2, 5, 8
  xs = jnp.asarray(np.random.default_rng(3).standard_normal((t, b, i)), jnp.float32)
  module = layers.LSTMLayer(h)
  params = module.init(jax.random.PRNGKey(0), xs)['params']

  def loss_fast(params, xs):
    return jnp.sum(module.apply({'params': params}, xs)[0] ** 2)

  def loss_ref(params, xs):
    zeros = jnp.zeros((b, h))
    hs, _ = _ref_layer(xs, params['w_ih'], params['w_hh'], params['b_ih'], params['b_hh'],
                       zeros, zeros)
    return jnp.sum(hs ** 2)

  g = jax.grad(loss_fast, (0, 1))(params, xs)
  r = jax.grad(loss_ref, (0, 1))(params, xs)
  for name in params:
    _assert_close(g[0][name], r[0][name], f'd{name}')
  _assert_close(g[1], r[1], 'dxs')
