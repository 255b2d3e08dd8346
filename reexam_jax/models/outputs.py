"""Output models: the distribution of the D elements of step t given the context h_t.

`__call__` takes h [T, B, H] and targets y [T, B, D] and returns per-element
log-densities [T, B, D] in the original element order (training, scoring). `step`
takes one step's h [B, H] and draws y [B, D] element by element in the model's order,
or scores a given y the same way (teacher forcing), with the same submodules and
parameters -> (y [B, D], log_prob [B, D]). They differ in how elements of one step
depend on each other:
  Factorised   independent given h_t (F-RNN, F-SRNN, and the flat models with D = 1),
  HierLSTM     auto-regressive through a low-level LSTM over the elements (RNN/SRNN-hier),
  HierMADE     auto-regressive through a masked MLP (the Perm-TIMIT hier models),
  DeltaSplit   a leaked subset first, the rest jointly given it (the delta-RNN).
  Handwriting  (pen, dx, dy) steps: a Bernoulli pen and a 1-D mixture per offset,
               independent given h_t or pen -> dx -> dy (the handwriting models).

`input_dropout` is the dropout the output applies to h before using it: the models'
own rates, set to 0 when the core already dropped h out. Dropout modules are named
'Dropout_<n>' as Flax names them in compact modules: the name is the RNG path of the
masks, which a seed's training run depends on.
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reexam_jax import layers


def sample_or_score(dist, key, temperature, y=None):
  """(y, log p(y)) under a head's distribution: y drawn from p^(1/temperature) when None
  (generation), else the given target (teacher-forced scoring). The log-density is
  always the model's own (temperature 1)."""
  if y is None:
    y = dist.sample(key, temperature)
  return y, dist.log_prob(y)


def scan_elements(module, body, carry, num_elements: int, key, y=None):
  """Runs body(module, carry, (i, key_i, y_i)) -> (carry, (y_i [B], log_prob_i [B])) over
  the elements i = 0..D-1 of one step, y_i being None when sampling; -> (y [B, D],
  log_prob [B, D]). A Flax lifted scan (module methods may not run inside a plain
  lax.scan), with the parameters shared by every element."""
  xs = (jnp.arange(num_elements), jax.random.split(key, num_elements),
        None if y is None else y.T)
  scan = nn.scan(body, variable_broadcast='params', split_rngs={'params': False})
  _, (ys, log_probs) = scan(module, carry, xs)
  return ys.T, log_probs.T


class Factorised(nn.Module):
  """log p(y_t | h_t) = sum_i log p(y_t,i | h_t)."""
  d_data: int
  head: str  # 'gmm' | 'bernoulli'
  n_mix: int = 1
  input_dropout: float = 0.0
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS

  def setup(self):
    self.h_dropout = layers.Dropout(self.input_dropout, name='Dropout_0')
    self.crit = layers.make_head(self.head, self.d_data, self.n_mix, precision=self.precision)

  def __call__(self, h, y, *, deterministic: bool):
    return self.crit(self.h_dropout(h, deterministic=deterministic)).log_prob(y)

  def step(self, h, key, temperature=1.0, y=None):
    return sample_or_score(self.crit(h), key, temperature, y)


class HierLSTM(nn.Module):
  """Low-level LSTM over the elements of a step (docs/reference.md, "Models").

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

  def setup(self):
    init = layers.uniform(0.01)
    self.init_h = self.param('init_h', init, (self.n_low_layer, self.d_rnn))
    self.init_c = self.param('init_c', init, (self.n_low_layer, self.d_rnn))
    bound = 1.0  # Linear(1, E): PyTorch's U(±1/sqrt(fan_in)) with fan_in = 1
    self.emb_low_kernel = self.param('emb_low_kernel', layers.uniform(bound), (self.d_emb,))
    self.emb_low_bias = self.param('emb_low_bias', layers.uniform(bound), (self.d_emb,))
    self.rnn_low = layers.LSTM(self.d_rnn, self.n_low_layer, self.dropout,
                               precision=self.precision)
    if self.head == 'bernoulli':  # MIDI: one Bernoulli head shared by all positions
      self.crit = layers.BernoulliHead(1, precision=self.precision)
    else:
      self.crit = layers.GMMHead(self.d_data, self.n_mix, per_element=True,
                                 precision=self.precision)
    self.emb_dropout = layers.Dropout(self.dropout, name='Dropout_0')
    self.ctx_dropout = layers.Dropout(self.dropout, name='Dropout_1')
    self.out_dropout = layers.Dropout(self.dropout, name='Dropout_2')

  def _embed(self, y):
    """emb_low: element values y [...] -> [..., E]."""
    return y[..., None] * self.emb_low_kernel + self.emb_low_bias

  def _initial_states(self, batch: int):
    """The learned initial (h, c) [batch, H] of every low-level layer."""
    bcast = lambda v: jnp.broadcast_to(v, (batch, self.d_rnn))
    return [(bcast(h), bcast(c)) for h, c in zip(self.init_h, self.init_c)]

  def _low_input(self, y, h, deterministic):
    """The first low-level layer's input for every position: [D, T*B, E+H] values, or
    (shared masks, or none) a ProjectedInput computing its gates at O(T*B) cost."""
    t, b, d = y.shape
    y_elems = y.reshape(t * b, d).T  # [D, T*B]
    h = h.reshape(t * b, -1)  # [T*B, H]
    if deterministic or self.dropout == 0.0 or self.dropout_per == 'step':
      # scaled 0/(1/(1-p)) masks
      keep_e = self.emb_dropout(jnp.ones((t * b, self.d_emb), y.dtype),
                                deterministic=deterministic)
      ctx = self.ctx_dropout(h, deterministic=deterministic)

      def project(w_ih):  # [4H, E+H] -> [D, T*B, 4H]
        w_e, w_h = w_ih[:, :self.d_emb], w_ih[:, self.d_emb:]
        mm = lambda u, v: layers.matmul(u, v, self.precision)
        slope = mm(keep_e * self.emb_low_kernel, w_e.T)  # [T*B, 4H]: d gates / d y_i
        offset = mm(keep_e * self.emb_low_bias, w_e.T) + mm(ctx, w_h.T)  # [T*B, 4H]
        return y_elems[:, :, None] * slope + offset
      return layers.ProjectedInput(self.d_emb + h.shape[-1], (t * b,), project)
    if self.dropout_per != 'element':
      raise ValueError(f'config.model.low_dropout must be "element" or "step", '
                       f'got {self.dropout_per!r}')
    # fresh masks per position
    emb = self.emb_dropout(self._embed(y_elems), deterministic=deterministic)  # [D, T*B, E]
    ctx = self.ctx_dropout(jnp.broadcast_to(h, (d,) + h.shape),
                           deterministic=deterministic)  # [D, T*B, H]
    return jnp.concatenate([emb, ctx], axis=-1)

  def _element_dist(self, pred, i):
    """The distribution of element i from its predictor pred [..., H] (the Bernoulli
    head is element 0's, shared by all)."""
    return self.crit(pred, element=0 if self.head == 'bernoulli' else i)

  def __call__(self, h, y, *, deterministic: bool):
    t, b, d = y.shape
    out, _ = self.rnn_low(self._low_input(y, h, deterministic), deterministic=deterministic,
                          initial_states=self._initial_states(t * b))  # [D, T*B, H]
    first = jnp.broadcast_to(self.init_h[-1], (1, t * b, self.d_rnn))
    out = jnp.concatenate([first, out[:-1]], axis=0)  # predictor of element i: [D, T*B, H]
    out = self.out_dropout(out, deterministic=deterministic)
    out = out.swapaxes(0, 1).reshape(t, b, d, self.d_rnn)
    if self.head == 'bernoulli':
      return self.crit(out).log_prob(y[..., None])[..., 0]
    return self.crit(out).log_prob(y)

  def step(self, h, key, temperature=1.0, y=None):
    """Element i is drawn (or scored) from the low-level LSTM after elements < i."""
    def element(module, carry, inp):
      states, pred = carry  # pred: [B, H]
      i, key_i, y_i = inp
      y_i, log_prob = sample_or_score(module._element_dist(pred, i), key_i, temperature, y_i)
      x = jnp.concatenate([module._embed(y_i), h], axis=-1)  # [B, E+H]
      out, states = module.rnn_low(x[None], deterministic=True, initial_states=states)
      return (states, out[0]), (y_i, log_prob)

    batch = h.shape[0]
    first = jnp.broadcast_to(self.init_h[-1], (batch, self.d_rnn))
    return scan_elements(self, element, (self._initial_states(batch), first), self.d_data,
                         key, y)


def made_mask(d_data: int, d_ctx: int) -> np.ndarray:
  """[D, d_ctx + D - 1] mask: block u sees all context features and y_{<u}."""
  rows = np.arange(d_data)[:, None]
  cols = np.arange(d_ctx + d_data - 1)[None, :]
  return (cols <= rows + d_ctx - 1).astype(np.float32)


def layer_norm(x, scale, bias, axes, eps: float = 1e-5):
  """(x - mean) / sqrt(var + eps) * scale + bias over `axes`, computed as nn.LayerNorm
  computes it (var = E[x^2] - E[x]^2, clipped at 0)."""
  mean = x.mean(axes, keepdims=True)
  var = jnp.maximum(0.0, jnp.square(x).mean(axes, keepdims=True) - jnp.square(mean))
  return (x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias


class BlockNorm(nn.Module):
  """LayerNorm of D blocks of features, x [..., D, K], with a gain 'scale' and offset
  'bias' of [D, K] (nn.LayerNorm(feature_axes=(-2, -1))'s parameters): each block on its
  own, or all blocks together when `joint`. With `element` i, x is block i alone,
  [..., K] (generation, one element at a time)."""
  num_blocks: int
  joint: bool = False

  @nn.compact
  def __call__(self, x, element=None):
    shape = (self.num_blocks, x.shape[-1])
    scale = self.param('scale', nn.initializers.ones, shape)
    bias = self.param('bias', nn.initializers.zeros, shape)
    if element is not None:
      scale, bias = scale[element], bias[element]
    return layer_norm(x, scale, bias, (-2, -1) if self.joint else (-1,))


class HierMADE(nn.Module):
  """Masked MLP over the elements of a step, without weight sharing (docs/reference.md,
  "Models").

  Layer 0 maps [h_t, y_{t,0..D-2}] to D blocks of d_nade features through a masked
  weight [D, H+D-1, d_nade, 1]; later layers are per-block dense maps. `joint_layernorm`
  restores the reference's LayerNorm over the joint [D, d_nade] block, which lets block
  u see statistics of blocks that read y_u (not a normalised density, so `step` refuses
  it); the default normalises each block on its own. Both have the same [D, d_nade]
  affine parameters.
  """
  d_data: int
  d_rnn: int  # H, the width of h
  d_nade: int
  head: str
  n_mix: int = 1
  n_low_layer: int = 1
  input_dropout: float = 0.0
  dropout: float = 0.0
  joint_layernorm: bool = False
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS

  def setup(self):
    d, k = self.d_data, self.d_nade
    self.w0 = self.param('w0', layers.torch_kaiming_uniform, (d, self.d_rnn + d - 1, k, 1))
    self.b0 = self.param('b0', nn.initializers.zeros, (d, k))
    ws, bs = [], []
    for layer in range(1, self.n_low_layer):
      ws.append(self.param(f'w{layer}', layers.torch_kaiming_uniform, (d, k, k)))
      bs.append(self.param(f'b{layer}', nn.initializers.zeros, (d, k)))
    self.ws, self.bs = ws, bs
    self.norms = [BlockNorm(d, self.joint_layernorm, name=f'norm_{layer}')
                  for layer in range(self.n_low_layer)]
    self.h_dropout = layers.Dropout(self.input_dropout, name='Dropout_0')
    self.dropouts = [layers.Dropout(self.dropout, name=f'Dropout_{layer + 1}')
                     for layer in range(self.n_low_layer)]
    self.crit = layers.make_head(self.head, d, self.n_mix, per_element=True,
                                 precision=self.precision)

  def num_unmasked_rows(self, width: int) -> int:
    """Number of ones in the [D, H+D-1] mask (given width = H+D-1)."""
    return int(made_mask(self.d_data, width - self.d_data + 1).sum())

  def num_masked_weights(self, width: int) -> int:
    """W0 entries that the mask zeroes: stored but never used."""
    return (self.d_data * width - self.num_unmasked_rows(width)) * self.d_nade

  def _weights(self):
    """(weight [D, in, d_nade], bias [D, d_nade]) of every layer, W0 masked so that
    block u reads h and y_<u only."""
    mask = jnp.asarray(made_mask(self.d_data, self.d_rnn))[:, :, None]  # [D, H+D-1, 1]
    return list(zip([self.w0[..., 0] * mask, *self.ws], [self.b0, *self.bs]))

  def _features(self, u, weights, deterministic, element=None):
    """The masked MLP: u = [h, y_<D-1] [..., H+D-1] -> the blocks' features [..., D,
    d_nade], or block `element`'s alone [..., d_nade]."""
    a = u
    for layer, (w, b) in enumerate(weights):
      if element is not None:
        eq, w, b = '...v,vk->...k', w[element], b[element]
      else:
        eq = '...v,uvk->...uk' if layer == 0 else '...uv,uvk->...uk'
      a = layers.einsum(eq, a, w, self.precision) + b
      a = nn.relu(self.norms[layer](a, element))
      a = self.dropouts[layer](a, deterministic=deterministic)
    return a

  def __call__(self, h, y, *, deterministic: bool):
    h = self.h_dropout(h, deterministic=deterministic)
    u = jnp.concatenate([h, y[..., :self.d_data - 1]], axis=-1)  # [T, B, H+D-1]
    a = self._features(u, self._weights(), deterministic)  # [T, B, D, d_nade]
    return self.crit(a).log_prob(y)

  def step(self, h, key, temperature=1.0, y=None):
    """Element i is drawn (or scored) from block i, which reads h and y_<i only."""
    if self.joint_layernorm:
      raise NotImplementedError('sampling hier_made with joint_layernorm=True: its '
                                'LayerNorm leaks later elements, so it has no ancestral order')
    d, weights = self.d_data, self._weights()

    def element(module, y_so_far, inp):  # y_so_far: [B, D], zeros from element i on
      i, key_i, y_i = inp
      u = jnp.concatenate([h, y_so_far[:, :d - 1]], axis=-1)  # [B, H+D-1]
      dist = module.crit(module._features(u, weights, True, element=i), element=i)
      y_i, log_prob = sample_or_score(dist, key_i, temperature, y_i)
      return y_so_far.at[:, i].set(y_i), (y_i, log_prob)

    return scan_elements(self, element, jnp.zeros((h.shape[0], d), h.dtype), d, key, y)


def delta_split(d_data: int, split: str, chk_len: int = 2, d_leak: int = 11,
                seed: int = 0):
  """(leaked, rest) element indices of the delta-RNN (docs/reference.md, "Models").

  'interleave': every chk_len-th element is leaked;
  'random': the first d_leak entries of a fixed permutation, drawn with numpy's legacy
  RandomState, whose stream numpy keeps stable across releases.
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

  def setup(self):
    self.crit_leak = layers.make_head(self.head, len(self.leak), self.n_mix,
                                      precision=self.precision)
    self.h_dropout = layers.Dropout(self.dropout, name='Dropout_0')
    self.rest_dense = [layers.TorchDense(self.d_rnn, use_bias=False, precision=self.precision,
                                         name=f'rest_dense_{i}') for i in range(2)]
    self.rest_norm = [nn.LayerNorm(epsilon=1e-5, name=f'rest_norm_{i}') for i in range(2)]
    self.r_dropout = layers.Dropout(self.dropout, name='Dropout_1')
    self.crit_rest = layers.make_head(self.head, len(self.rest), self.n_mix,
                                      precision=self.precision)

  def _rest_features(self, h, y_leak):
    """[h, y_leak] -> the rest's predictor [..., d_rnn]: two Dense-LayerNorm-ReLU."""
    r = jnp.concatenate([h, y_leak], axis=-1)
    for dense, norm in zip(self.rest_dense, self.rest_norm):
      r = nn.relu(norm(dense(r)))
    return r

  def _merge(self, leak_part, rest_part):
    """Per-element values of the leaked and rest elements -> [..., D], in element order."""
    out = jnp.zeros(leak_part.shape[:-1] + (self.d_data,), leak_part.dtype)
    return out.at[..., np.asarray(self.leak)].set(leak_part).at[
        ..., np.asarray(self.rest)].set(rest_part)

  def __call__(self, h, y, *, deterministic: bool):
    y_leak, y_rest = y[..., np.asarray(self.leak)], y[..., np.asarray(self.rest)]
    lp_leak = self.crit_leak(self.h_dropout(h, deterministic=deterministic)).log_prob(y_leak)
    r = self.r_dropout(self._rest_features(h, y_leak), deterministic=deterministic)
    return self._merge(lp_leak, self.crit_rest(r).log_prob(y_rest))

  def step(self, h, key, temperature=1.0, y=None):
    """The leaked elements from h, then the rest from [h, y_leak]."""
    k_leak, k_rest = jax.random.split(key)
    part = lambda idx: None if y is None else y[..., np.asarray(idx)]
    y_leak, lp_leak = sample_or_score(self.crit_leak(h), k_leak, temperature, part(self.leak))
    y_rest, lp_rest = sample_or_score(self.crit_rest(self._rest_features(h, y_leak)), k_rest,
                                      temperature, part(self.rest))
    return self._merge(y_leak, y_rest), self._merge(lp_leak, lp_rest)


class Handwriting(nn.Module):
  """The handwriting output over (pen, dx, dy) steps (docs/reference.md, "Models"):
  pen ~ Bernoulli(Linear(H, 1)(h)), dx and dy each a K-component 1-D mixture
  (layers.CoordinateGMMHead) of h, or, with `hier`, of [h, pen] and [h, pen, dx]
  (the raw target values concatenated: the order pen -> dx -> dy). `bivariate`
  replaces the two 1-D mixtures by one correlated mixture over (dx, dy), read from h
  (or [h, pen] with `hier`) and scored as log p(dx) + log p(dy | dx): an option beyond
  the paper. Any core's h [..., H] can feed it.
  """
  hier: bool = False
  n_mix: int = 5
  input_dropout: float = 0.0
  bivariate: bool = False
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS
  d_data = 3  # (pen, dx, dy)

  def setup(self):
    self.h_dropout = layers.Dropout(self.input_dropout, name='Dropout_0')
    self.pen = layers.TorchDense(1, precision=self.precision, name='pen')
    if self.bivariate:
      self.gm_xy = layers.BivariateGMMHead(self.n_mix, self.precision)
    else:
      self.gm_dx = layers.CoordinateGMMHead(self.n_mix, self.precision)
      self.gm_dy = layers.CoordinateGMMHead(self.n_mix, self.precision)

  def _context(self, h, *earlier):
    """The input of a later element's head: h, or [h, earlier elements] with `hier`."""
    if not self.hier:
      return h
    return jnp.concatenate([h] + [e[..., None] for e in earlier], axis=-1)

  def _elements(self, h, key, temperature, y):
    """(y, log_prob), each [..., 3], element by element in the order pen -> dx -> dy:
    each drawn from p^(1/temperature) (y None) or the given target scored."""
    keys = jax.random.split(key, 3) if key is not None else (None,) * 3
    given = lambda i: None if y is None else y[..., i]
    pen, lp_pen = sample_or_score(layers.Bernoulli(self.pen(h)[..., 0]), keys[0],
                                  temperature, given(0))
    if self.bivariate:
      xy, lp_xy = sample_or_score(self.gm_xy(self._context(h, pen)), keys[1], temperature,
                                  None if y is None else y[..., 1:])
      return jnp.concatenate([pen[..., None], xy], -1), jnp.concatenate(
          [lp_pen[..., None], lp_xy], -1)
    dx, lp_dx = sample_or_score(self.gm_dx(self._context(h, pen)), keys[1], temperature,
                                given(1))
    dy, lp_dy = sample_or_score(self.gm_dy(self._context(h, pen, dx)), keys[2], temperature,
                                given(2))
    return jnp.stack([pen, dx, dy], -1), jnp.stack([lp_pen, lp_dx, lp_dy], -1)

  def __call__(self, h, y, *, deterministic: bool):
    return self._elements(self.h_dropout(h, deterministic=deterministic), None, 1.0, y)[1]

  def step(self, h, key, temperature=1.0, y=None):
    return self._elements(h, key, temperature, y)
