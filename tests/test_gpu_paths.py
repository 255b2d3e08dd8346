"""The opt-in cuDNN LSTM path (config.model.lstm_impl='cudnn').

On every machine: the weight packing it relies on is checked against JAX's own unpacking
and reference LSTM, and asking for it without a GPU is a clear error. On a CUDA GPU:
whole models give the same log-densities and gradients through cuDNN as through the
default scan."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn as jax_rnn

from reexam_jax import experiments, layers, models

on_gpu = pytest.mark.skipif(jax.default_backend() != 'gpu', reason='cuDNN: CUDA GPUs only')


def test_packed_weights_follow_jax_rnn_layout():
  t, b, i, h = 9, 3, 5, 4
  rng = np.random.default_rng(0)
  arr = lambda *shape: jnp.asarray(0.5 * rng.standard_normal(shape), jnp.float32)
  xs, w_ih, w_hh, b_ih, b_hh, h0, c0 = (arr(t, b, i), arr(4 * h, i), arr(4 * h, h),
                                        arr(4 * h), arr(4 * h), arr(b, h), arr(b, h))
  packed = layers.pack_cudnn_weights(w_ih, w_hh, b_ih, b_hh)
  assert packed.size == jax_rnn.get_num_params_in_lstm(i, h, 1, False)
  unpacked = jax_rnn.unpack_lstm_weights(packed, i, h, 1, False)
  ys, h_n, c_n = jax_rnn.lstm_ref(
      jnp.swapaxes(xs, 0, 1), h0[None], c0[None], *unpacked,
      jnp.full((b,), t, jnp.int32), i, h, 1, 0.0, False)
  hs, (h_t, c_t) = layers.lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, h0, c0)
  np.testing.assert_allclose(jnp.swapaxes(ys, 0, 1), hs, atol=1e-6)
  np.testing.assert_allclose(h_n[0], h_t, atol=1e-6)
  np.testing.assert_allclose(c_n[0], c_t, atol=1e-6)


@pytest.mark.skipif(jax.default_backend() == 'gpu', reason='checks the non-GPU error')
def test_cudnn_without_gpu_is_a_clear_error():
  config = experiments.get_config('nottingham', 'f_rnn', 'lstm_impl=cudnn')
  with pytest.raises(ValueError, match="lstm_impl='cudnn' needs a CUDA GPU"):
    models.build_model(config.model)


def test_unknown_lstm_impl_is_named():
  config = experiments.get_config('nottingham', 'f_rnn', 'lstm_impl=pallas')
  with pytest.raises(ValueError, match='config.model.lstm_impl'):
    models.build_model(config.model)


@on_gpu
@pytest.mark.parametrize('name', ['f_rnn', 'f_srnn', 'rnn_flat'])
def test_cudnn_model_matches_scan(name):
  x = (np.random.default_rng(0).random((31, 4, 88)) < 0.2).astype(np.float32)
  if name == 'rnn_flat':
    x = x.reshape(-1, 4, 1)[:200]
  results = []
  for impl in ('scan', 'cudnn'):
    config = experiments.get_config('nottingham', name, f'lstm_impl={impl},dropout=0.0')
    model = models.build_model(config.model, precision='highest')
    params = models.init_params(model, jax.random.key(0), x.shape[-1])

    def loss(p):
      out = model.apply({'params': p}, x[:-1], x[1:], rngs={'latent': jax.random.key(1)})
      return out['log_prob'].sum() - out['kl'].sum()
    results.append(jax.jit(jax.value_and_grad(loss))(params))
  (v_scan, g_scan), (v_cudnn, g_cudnn) = results
  np.testing.assert_allclose(v_cudnn, v_scan, rtol=1e-4)
  for a, b in zip(jax.tree.leaves(g_cudnn), jax.tree.leaves(g_scan)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(jnp.abs(b).max()))
