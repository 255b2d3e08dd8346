"""Output models: the distribution of the D elements of step t given the context h_t.

Each takes h [T, B, H] and targets y [T, B, D] and returns per-element log-densities
[T, B, D] in the original element order. They differ in how elements of one step depend
on each other:
  Factorised   independent given h_t (F-RNN, F-SRNN, and the flat models with D = 1),
  HierLSTM     auto-regressive through a low-level LSTM over the elements (RNN/SRNN-hier),
  HierMADE     auto-regressive through a masked MLP (the Perm-TIMIT hier models),
  DeltaSplit   a leaked subset first, the rest jointly given it (the delta-RNN).

`input_dropout` is the dropout the output applies to h before using it: the models'
own rates, set to 0 when the core already dropped h out.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from reexam_jax import layers


class Factorised(nn.Module):
  """log p(y_t | h_t) = sum_i log p(y_t,i | h_t)."""
  d_data: int
  head: str  # 'gmm' | 'bernoulli'
  n_mix: int = 1
  input_dropout: float = 0.0
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS

  @nn.compact
  def __call__(self, h, y, *, deterministic: bool):
    h = layers.Dropout(self.input_dropout)(h, deterministic=deterministic)
    return layers.make_head(self.head, self.d_data, self.n_mix, precision=self.precision,
                            name='crit')(h, y)


class HierLSTM(nn.Module):
  """Low-level LSTM over the elements of a step (spec §2.3-2.4).

  Position i reads [emb_low(y_{t,i}), dropout(h_t)], the state starts from a learned
  (init_h, init_c), and the outputs are shifted by one element: element 0 is predicted
  from init_h alone (the reference's behaviour, a valid density), element i from the
  state after elements 0..i-1.

  `dropout_per` picks the dropout masks of the low-level inputs in training: 'element'
  draws fresh masks at every position (the reference); 'step' shares one mask across
  the elements of a step, which lets the input projection be computed once per step
  (a documented deviation, several times cheaper). Evaluation is identical for both.
  """
  d_data: int
  d_rnn: int
  d_emb: int
  head: str
  n_mix: int = 1
  n_low_layer: int = 1
  dropout: float = 0.0
  dropout_per: str = 'element'  # 'element' | 'step'
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS

  def _low_input(self, y, h, deterministic):
    """The first low-level layer's input for every position: [D, T*B, E+H] values, or
    (shared masks, or none) a ProjectedInput computing its gates at O(T*B) cost."""
    t, b, d = y.shape
    bound = 1.0  # Linear(1, E): PyTorch's U(±1/sqrt(fan_in)) with fan_in = 1
    w = self.param('emb_low_kernel', layers.uniform(bound), (self.d_emb,))
    bias = self.param('emb_low_bias', layers.uniform(bound), (self.d_emb,))
    y_elems = y.reshape(t * b, d).T  # [D, T*B]
    h = h.reshape(t * b, -1)  # [T*B, H]
    drop = lambda v: layers.Dropout(self.dropout)(v, deterministic=deterministic)
    if deterministic or self.dropout == 0.0 or self.dropout_per == 'step':
      keep_e = drop(jnp.ones((t * b, self.d_emb), y.dtype))  # scaled 0/(1/(1-p)) masks
      ctx = drop(h)

      def project(w_ih):  # [4H, E+H] -> [D, T*B, 4H]
        w_e, w_h = w_ih[:, :self.d_emb], w_ih[:, self.d_emb:]
        mm = lambda u, v: layers.matmul(u, v, self.precision)
        slope = mm(keep_e * w, w_e.T)  # [T*B, 4H]: d gates / d y_i
        offset = mm(keep_e * bias, w_e.T) + mm(ctx, w_h.T)  # [T*B, 4H]
        return y_elems[:, :, None] * slope + offset
      return layers.ProjectedInput(self.d_emb + h.shape[-1], (t * b,), project)
    if self.dropout_per != 'element':
      raise ValueError(f'config.model.low_dropout must be "element" or "step", '
                       f'got {self.dropout_per!r}')
    emb = drop(y_elems[:, :, None] * w + bias)  # [D, T*B, E], fresh masks per position
    ctx = drop(jnp.broadcast_to(h, (d,) + h.shape))  # [D, T*B, H]
    return jnp.concatenate([emb, ctx], axis=-1)

  @nn.compact
  def __call__(self, h, y, *, deterministic: bool):
    t, b, d = y.shape
    init = layers.uniform(0.01)
    init_h = self.param('init_h', init, (self.n_low_layer, self.d_rnn))
    init_c = self.param('init_c', init, (self.n_low_layer, self.d_rnn))
    states = [(jnp.broadcast_to(init_h[l], (t * b, self.d_rnn)),
               jnp.broadcast_to(init_c[l], (t * b, self.d_rnn)))
              for l in range(self.n_low_layer)]
    out = layers.LSTM(self.d_rnn, self.n_low_layer, self.dropout, precision=self.precision,
                      name='rnn_low')(
        self._low_input(y, h, deterministic), deterministic=deterministic,
        initial_states=states)  # [D, T*B, H]
    first = jnp.broadcast_to(init_h[-1], (1, t * b, self.d_rnn))
    out = jnp.concatenate([first, out[:-1]], axis=0)  # predictor of element i: [D, T*B, H]
    out = layers.Dropout(self.dropout)(out, deterministic=deterministic)
    out = out.swapaxes(0, 1).reshape(t, b, d, self.d_rnn)

    if self.head == 'bernoulli':  # MIDI: one Bernoulli head shared by all positions
      return layers.BernoulliHead(1, precision=self.precision, name='crit')(
          out, y[..., None])[..., 0]
    return layers.GMMHead(d, self.n_mix, per_element=True, precision=self.precision,
                          name='crit')(out, y)


def made_mask(d_data: int, d_ctx: int) -> np.ndarray:
  """[D, d_ctx + D - 1] mask: block u sees all context features and y_{<u}."""
  rows = np.arange(d_data)[:, None]
  cols = np.arange(d_ctx + d_data - 1)[None, :]
  return (cols <= rows + d_ctx - 1).astype(np.float32)


class HierMADE(nn.Module):
  """Masked MLP over the elements of a step, without weight sharing (spec §2.5-2.6).

  Layer 0 maps [h_t, y_{t,0..D-2}] to D blocks of d_nade features through a masked
  weight [D, H+D-1, d_nade, 1]; later layers are per-block dense maps. `joint_layernorm`
  restores the reference's LayerNorm over the joint [D, d_nade] block, which lets block
  u see statistics of blocks that read y_u (not a normalised density); the default
  normalises each block on its own. Both have the same [D, d_nade] affine parameters.
  """
  d_data: int
  d_nade: int
  head: str
  n_mix: int = 1
  n_low_layer: int = 1
  input_dropout: float = 0.0
  dropout: float = 0.0
  joint_layernorm: bool = False
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS

  def num_unmasked_rows(self, width: int) -> int:
    """Number of ones in the [D, H+D-1] mask (given width = H+D-1)."""
    return int(made_mask(self.d_data, width - self.d_data + 1).sum())

  def num_masked_weights(self, width: int) -> int:
    """W0 entries that the mask zeroes: stored but never used."""
    return (self.d_data * width - self.num_unmasked_rows(width)) * self.d_nade

  def _norm_act_drop(self, a, deterministic, name):
    axes = (-2, -1) if self.joint_layernorm else (-1,)
    a = nn.LayerNorm(epsilon=1e-5, reduction_axes=axes, feature_axes=(-2, -1), name=name)(a)
    return layers.Dropout(self.dropout)(nn.relu(a), deterministic=deterministic)

  @nn.compact
  def __call__(self, h, y, *, deterministic: bool):
    d, k = self.d_data, self.d_nade
    h = layers.Dropout(self.input_dropout)(h, deterministic=deterministic)
    u = jnp.concatenate([h, y[..., :d - 1]], axis=-1)  # [T, B, H+D-1]
    mask = jnp.asarray(made_mask(d, h.shape[-1]))[:, :, None, None]
    w0 = self.param('w0', layers.torch_kaiming_uniform, (d, u.shape[-1], k, 1))
    b0 = self.param('b0', nn.initializers.zeros, (d, k))
    a = layers.einsum('...v,uvk->...uk', u, (w0 * mask)[..., 0],
                      self.precision) + b0  # [T, B, D, d_nade]
    a = self._norm_act_drop(a, deterministic, 'norm_0')
    for layer in range(1, self.n_low_layer):
      w = self.param(f'w{layer}', layers.torch_kaiming_uniform, (d, k, k))
      bias = self.param(f'b{layer}', nn.initializers.zeros, (d, k))
      a = layers.einsum('...uk,ukl->...ul', a, w, self.precision) + bias
      a = self._norm_act_drop(a, deterministic, f'norm_{layer}')
    return layers.make_head(self.head, d, self.n_mix, per_element=True,
                            precision=self.precision, name='crit')(a, y)


def delta_split(d_data: int, split: str, chk_len: int = 2, d_leak: int = 11,
                seed: int = 0):
  """(leaked, rest) element indices of the delta-RNN.

  'interleave': every chk_len-th element is leaked (spec §2.7);
  'random': the first d_leak entries of a fixed permutation (spec §2.8), drawn with
  numpy's legacy RandomState, whose stream numpy keeps stable across releases.
  """
  if split == 'interleave':
    leak = np.arange(0, d_data, chk_len)
    rest = np.setdiff1d(np.arange(d_data), leak)
  elif split == 'random':
    perm = np.random.RandomState(seed).permutation(d_data)
    leak, rest = perm[:d_leak], perm[d_leak:]
  else:
    raise ValueError(f'config.model.split must be "interleave" or "random", got {split!r}')
  return leak, rest


class DeltaSplit(nn.Module):
  """p(y_leak | h) p(y_rest | y_leak, h): the delta-RNN output (paper Eqn 12)."""
  d_data: int
  d_rnn: int
  head: str
  leak: Sequence[int]
  rest: Sequence[int]
  n_mix: int = 1
  dropout: float = 0.0
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS

  @nn.compact
  def __call__(self, h, y, *, deterministic: bool):
    leak, rest = np.asarray(self.leak), np.asarray(self.rest)
    drop = lambda v: layers.Dropout(self.dropout)(v, deterministic=deterministic)
    y_leak, y_rest = y[..., leak], y[..., rest]
    lp_leak = layers.make_head(self.head, len(leak), self.n_mix, precision=self.precision,
                               name='crit_leak')(drop(h), y_leak)
    r = jnp.concatenate([h, y_leak], axis=-1)
    for i in range(2):
      r = layers.TorchDense(self.d_rnn, use_bias=False, precision=self.precision,
                            name=f'rest_dense_{i}')(r)
      r = nn.relu(nn.LayerNorm(epsilon=1e-5, name=f'rest_norm_{i}')(r))
    lp_rest = layers.make_head(self.head, len(rest), self.n_mix, precision=self.precision,
                               name='crit_rest')(drop(r), y_rest)
    log_prob = jnp.zeros(y.shape, lp_leak.dtype)
    return log_prob.at[..., leak].set(lp_leak).at[..., rest].set(lp_rest)
