"""Building blocks shared by every model: a PyTorch-layout LSTM stack, dense layers with
PyTorch's initialisation, LReLU, and the output heads.

Tensors are time-major: [T, B, ...]. Parameter shapes follow PyTorch's storage so that
counts equal the reference's exactly (two LSTM biases, per-element heads).
"""
import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
from jax.experimental import rnn as jax_rnn
import jax.numpy as jnp

from reexam_jax import likelihoods


# ----------------------------------------------------------------------------------------
# Matmuls.
# ----------------------------------------------------------------------------------------
# The matmul precisions of the models (config.matmul_precision; every module has it as
# its `precision` field, set by models.build_model), and what jnp.einsum is told:
#   'default'        float32 at the platform's default precision (TF32 on recent GPUs),
#   'highest'        true float32 everywhere (evaluation always scores with it),
#   'BF16_BF16_F32'  bfloat16 operands, float32 accumulation (mixed-precision training).
PRECISIONS = {
    'default': None,
    'highest': jax.lax.Precision.HIGHEST,
    'BF16_BF16_F32': jax.lax.DotAlgorithmPreset.BF16_BF16_F32,
}


def einsum(eq: str, a, b, precision: str = 'default'):
  """jnp.einsum for every matmul of the models, at one of PRECISIONS.

  Under BF16_BF16_F32 the operands are cast to bfloat16 (float32 result). The explicit
  cast is what makes that precision pay on CPUs: XLA:CPU computes a dot that merely
  names the bf16 algorithm in float32, but runs a dot of bfloat16 arrays about twice as
  fast (docs/benchmarks.md). On GPUs and TPUs it is the same dot.
  """
  if precision == 'BF16_BF16_F32':
    return jnp.einsum(eq, a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                      precision=PRECISIONS[precision], preferred_element_type=jnp.float32)
  return jnp.einsum(eq, a, b, precision=PRECISIONS[precision])


def matmul(a, b, precision: str = 'default'):
  """a @ b for a [..., K] and b [K, N], as `einsum`."""
  return einsum('...k,kn->...n', a, b, precision)


# ----------------------------------------------------------------------------------------
# Initialisers.
# ----------------------------------------------------------------------------------------
def uniform(bound: float):
  """U(-bound, bound), PyTorch's default for linear and recurrent layers."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def torch_kaiming_uniform(key, shape, dtype=jnp.float32):
  """kaiming_uniform(a=sqrt(5)) on a tensor stored as `shape`: U(±1/sqrt(fan_in)) with
  PyTorch's fan_in = shape[1] * prod(shape[2:]) (not the input width; docs/reference.md,
  "Models")."""
  fan_in = 1
  for size in shape[1:]:
    fan_in *= size
  return uniform(fan_in ** -0.5)(key, shape, dtype)


def lrelu(x):
  """Leaky ReLU with slope 1/3, clamped to [-3, 3] (the SRNN MLP activation)."""
  return jnp.clip(jnp.where(x >= 0, x, x / 3.0), -3.0, 3.0)


class TorchDense(nn.Module):
  """nn.Linear with PyTorch's U(±1/sqrt(fan_in)) init of weight and bias; kernel [O, I]
  as PyTorch stores it (the weight gradient's fast orientation on XLA:CPU, see GMMHead)."""
  features: int
  use_bias: bool = True
  precision: str = 'default'  # see PRECISIONS

  @nn.compact
  def __call__(self, x):
    bound = x.shape[-1] ** -0.5
    kernel = self.param('kernel', uniform(bound), (self.features, x.shape[-1]))
    y = einsum('...i,oi->...o', x, kernel, self.precision)
    if self.use_bias:
      y = y + self.param('bias', uniform(bound), (self.features,))
    return y


def bernoulli_mask(key, keep: float, shape) -> jax.Array:
  """Bernoulli(keep) booleans of `shape`, drawing k bits per element instead of 32.

  k is the fewest bits with keep * 2^k an integer (1 bit for the models' dropout 0.5):
  an element is kept when its k-bit field of a random word is below keep * 2^k, which
  has probability exactly `keep`. Random-number generation dominated dropout on CPU
  (~20 ns per 32-bit draw); other probabilities use jax.random.bernoulli.
  """
  bits = next((k for k in (1, 2, 4, 8, 16) if float(keep * 2 ** k).is_integer()), None)
  if bits is None:
    return jax.random.bernoulli(key, keep, shape)
  per_word = 32 // bits
  size = math.prod(shape)
  words = jax.random.bits(key, (-(-size // per_word), 1), jnp.uint32)
  shifts = jnp.arange(per_word, dtype=jnp.uint32) * bits
  fields = (words >> shifts) & (2 ** bits - 1)  # [words, per_word]
  return (fields.reshape(-1)[:size] < int(keep * 2 ** bits)).reshape(shape)


class Dropout(nn.Module):
  """nn.Dropout (inverted: kept values scaled by 1 / (1 - rate)) with bernoulli_mask."""
  rate: float

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    if self.rate == 1.0:  # x / keep would put NaNs into the gradient
      return jnp.zeros_like(x)
    keep = 1.0 - self.rate
    mask = bernoulli_mask(self.make_rng('dropout'), keep, x.shape)
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


# ----------------------------------------------------------------------------------------
# LSTM.
# ----------------------------------------------------------------------------------------
def _split_gates(a):
  """[..., 4H] -> four [..., H] arrays in PyTorch's gate order (i, f, g, o)."""
  hid = a.shape[-1] // 4
  return tuple(a[..., k * hid:(k + 1) * hid] for k in range(4))


def _lstm_forward_scan(gx4, w_hh, h0, c0, unroll, precision):
  """The recurrence over per-gate inputs gx4 = 4 x [T, B, H]. Per-gate arrays keep the
  step from slicing a [B, 4H] input, which made XLA:CPU's fused step kernels several
  times slower.

  Returns final (h, c) and per-step (h, c, i, f, g, o), each [T, B, H], gates activated.
  """
  w_hh_t = w_hh.T  # [H, 4H]

  def step(carry, gx):
    h, c = carry
    ri, rf, rg, ro = _split_gates(matmul(h, w_hh_t, precision))  # 4 x [B, H]
    i = jax.nn.sigmoid(gx[0] + ri)
    f = jax.nn.sigmoid(gx[1] + rf)
    g = jnp.tanh(gx[2] + rg)
    o = jax.nn.sigmoid(gx[3] + ro)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), (h, c, i, f, g, o)

  return jax.lax.scan(step, (h0, c0), gx4, unroll=unroll)


def _lstm_backward_scan(w_hh, h0, c0, per_step, dhs, dh_last, dc_last, unroll, precision):
  """Gradients of the recurrence from the forward's saved per-step values.

  Everything that does not depend on the incoming state gradients is computed on whole
  [T, B, H] arrays before the scan; the scan itself only propagates (dh, dc) and emits
  the pre-activation gate gradients dgates [T, B, 4H].
  Returns dgates, dh0, dc0 and h_prev [T, B, H] (the recurrent matmul's inputs).
  """
  hs, cs, i, f, g, o = per_step
  h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)  # [T, B, H]
  c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)
  tanh_c = jnp.tanh(cs)
  dc_from_dh = o * (1 - tanh_c * tanh_c)  # dc_t += dh_t * this
  coef = (g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g),  # x dc_t -> di, df, dg
          tanh_c * o * (1 - o))  # x dh_t -> do

  def step(carry, xs):
    dh, dc = carry  # from step t + 1
    dh_out, a, ci, cf, cg, co, f_t = xs
    dh = dh + dh_out
    dc = dc + dh * a
    dgates = jnp.concatenate([dc * ci, dc * cf, dc * cg, dh * co], axis=-1)  # [B, 4H]
    return (matmul(dgates, w_hh, precision), dc * f_t), dgates

  (dh0, dc0), dgates = jax.lax.scan(step, (dh_last, dc_last),
                                    (dhs, dc_from_dh, *coef, f), reverse=True,
                                    unroll=unroll)
  return dgates, dh0, dc0, h_prev


TB_MIN_ROWS = 512  # _matmul_tb: from this many T*B rows the fast orientation pays


def _matmul_tb(a, b, precision: str = 'default'):
  """sum over [T, B] of a^T b: [T, B, M], [T, B, N] -> [M, N] as one large matmul.

  With many rows it is computed as (b^T a)^T: XLA:CPU's matmul is up to twice as fast
  when the result's minor dimension is the wide 4H one ([1600, 1024]^T [1600, 256]: 21
  ms as [4H, I], 11 ms as [I, 4H] plus a transpose), and the barrier stops XLA from
  folding the transpose back into the dot's output layout. With few rows the matmul is
  cheap and the transpose is not: speech F-RNN at batch 4 (160 rows, [3000, 750]
  weights) is 8% faster direct, MIDI F-RNN (1,600 rows) 16% slower.
  """
  a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])  # [T*B, M], [T*B, N]
  if a.shape[0] < TB_MIN_ROWS:
    return matmul(a.T, b, precision)
  return jax.lax.optimization_barrier(matmul(b.T, a, precision)).T


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _recurrence(gates_x, w_hh, h0, c0, unroll, precision):
  (h, c), per_step = _lstm_forward_scan(_split_gates(gates_x), w_hh, h0, c0, unroll,
                                        precision)
  return per_step[0], (h, c)


def _recurrence_fwd(gates_x, w_hh, h0, c0, unroll, precision):
  (h, c), per_step = _lstm_forward_scan(_split_gates(gates_x), w_hh, h0, c0, unroll,
                                        precision)
  return (per_step[0], (h, c)), (w_hh, h0, c0, per_step)


def _recurrence_bwd(unroll, precision, res, cts):
  w_hh, h0, c0, per_step = res
  dhs, (dh_last, dc_last) = cts
  dgates, dh0, dc0, h_prev = _lstm_backward_scan(w_hh, h0, c0, per_step, dhs, dh_last,
                                                 dc_last, unroll, precision)
  return dgates, _matmul_tb(dgates, h_prev, precision), dh0, dc0


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def lstm_recurrence(gates_x, w_hh, h0, c0, unroll: int = 1, precision: str = 'default'):
  """Runs the LSTM recurrence given the input part of the gates.

  Reverse-mode differentiable through a custom VJP (forward-mode is not supported): the
  backward scan only carries the state gradients, and dW_hh is one [4H, T*B] x [T*B, H]
  matmul after it, instead of T small ones.

  Args:
    gates_x: [T, B, 4H] = x_t W_ih^T + b_ih + b_hh, gate order (i, f, g, o).
    w_hh: [4H, H] recurrent weight (PyTorch layout).
    h0, c0: [B, H] initial state.
    precision: of the recurrent matmuls (one of PRECISIONS).
  Returns:
    hs: [T, B, H] hidden outputs, and the final (h, c).
  """
  return _recurrence(gates_x, w_hh, h0, c0, unroll, precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _lstm_layer(xs, w_ih, bias, w_hh, h0, c0, unroll, precision):
  return _recurrence(matmul(xs, w_ih.T, precision) + bias, w_hh, h0, c0, unroll, precision)


def _lstm_layer_fwd(xs, w_ih, bias, w_hh, h0, c0, unroll, precision):
  gx4 = _split_gates(matmul(xs, w_ih.T, precision) + bias)  # 4 x [T, B, H]
  (h, c), per_step = _lstm_forward_scan(gx4, w_hh, h0, c0, unroll, precision)
  return (per_step[0], (h, c)), (xs, w_ih, w_hh, h0, c0, per_step)


def _lstm_layer_bwd(unroll, precision, res, cts):
  xs, w_ih, w_hh, h0, c0, per_step = res
  dhs, (dh_last, dc_last) = cts
  dgates, dh0, dc0, h_prev = _lstm_backward_scan(
      w_hh, h0, c0, per_step, dhs, dh_last, dc_last, unroll, precision)  # dgates: [T, B, 4H]
  return (matmul(dgates, w_ih, precision), _matmul_tb(dgates, xs, precision),
          dgates.sum((0, 1)), _matmul_tb(dgates, h_prev, precision), dh0, dc0)


_lstm_layer.defvjp(_lstm_layer_fwd, _lstm_layer_bwd)


def _rematerialised_layer(xs, w_ih, bias, w_hh, h0, c0, unroll, precision, chunk):
  """_lstm_layer over segments of `chunk` steps whose activations are recomputed in the
  backward pass: only the (h, c) at segment boundaries are kept, so the layer's saved
  activations shrink from 6 [T, B, H] arrays to 6 [chunk, B, H] plus 2 [T/chunk, B, H],
  for one extra forward pass."""
  n = xs.shape[0] // chunk

  def segment(state, x_seg):  # x_seg: [chunk, B, I]
    hs, state = _lstm_layer(x_seg, w_ih, bias, w_hh, *state, unroll, precision)
    return state, hs

  segments = xs[:n * chunk].reshape((n, chunk) + xs.shape[1:])
  state, hs = jax.lax.scan(jax.checkpoint(segment, prevent_cse=False), (h0, c0), segments)
  hs = hs.reshape((n * chunk,) + hs.shape[2:])
  if n * chunk < xs.shape[0]:  # a shorter last segment, kept as usual
    rest, state = _lstm_layer(xs[n * chunk:], w_ih, bias, w_hh, *state, unroll, precision)
    hs = jnp.concatenate([hs, rest], axis=0)
  return hs, state


def lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, h0, c0, unroll: int = 1, remat_chunk: int = 0,
               precision: str = 'default'):
  """One nn.LSTM layer, xs [T, ..., I] -> ([T, ..., H], final (h, c) [..., H]).

  The input projection is one [T*B, I] x [I, 4H] matmul outside the recurrence, and its
  gradients (dx, dW_ih, db) are single large matmuls/reductions in the custom VJP.
  Batch dimensions between T and the features are flattened for the scan.
  remat_chunk > 0 trades one extra forward pass for activation memory on long sequences
  (see _rematerialised_layer); the gradients are the same. precision: of every matmul,
  forward and backward (one of PRECISIONS).
  """
  t, batch, hid = xs.shape[0], xs.shape[1:-1], w_hh.shape[1]
  flat = lambda a: a.reshape((-1, hid))
  run = _lstm_layer
  if 0 < remat_chunk < t:
    run = functools.partial(_rematerialised_layer, chunk=remat_chunk)
  hs, (h, c) = run(xs.reshape((t, -1, xs.shape[-1])), w_ih, b_ih + b_hh, w_hh,
                   flat(h0), flat(c0), unroll, precision)
  return hs.reshape((t,) + batch + (hid,)), (h.reshape(batch + (hid,)),
                                             c.reshape(batch + (hid,)))


def pack_cudnn_weights(w_ih, w_hh, b_ih, b_hh):
  """PyTorch-layout weights of one layer -> the flat vector jax.experimental.rnn takes
  (W_ih, W_hh, b_ih, b_hh, each row-major; the inverse of its unpack_lstm_weights)."""
  return jnp.concatenate([w_ih.ravel(), w_hh.ravel(), b_ih, b_hh])


def cudnn_lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, h0, c0, precision: str = 'default'):
  """lstm_layer through cuDNN (jax.experimental.rnn.lstm; CUDA GPUs only), same
  arguments and results. cuDNN is batch-major, so xs is transposed around the call.
  Of the precisions, cuDNN knows true float32 ('highest') and otherwise allows TF32."""
  t, batch, hid = xs.shape[0], xs.shape[1:-1], w_hh.shape[1]
  x = jnp.swapaxes(xs.reshape((t, -1, xs.shape[-1])), 0, 1)  # [B, T, I]
  ys, h, c = jax_rnn.lstm(
      x, h0.reshape((1, -1, hid)), c0.reshape((1, -1, hid)),
      pack_cudnn_weights(w_ih, w_hh, b_ih, b_hh),
      jnp.full((x.shape[0],), t, jnp.int32), input_size=x.shape[-1], hidden_size=hid,
      num_layers=1, dropout=0.0, bidirectional=False, precision=PRECISIONS[precision])
  return (jnp.swapaxes(ys, 0, 1).reshape((t,) + batch + (hid,)),
          (h[0].reshape(batch + (hid,)), c[0].reshape(batch + (hid,))))


LSTM_IMPLS = ('scan', 'cudnn')


class LSTMLayer(nn.Module):
  """One nn.LSTM layer: W_ih [4H, I], W_hh [4H, H], b_ih and b_hh [4H], all U(±1/sqrt(H));
  W_hh re-initialised orthogonally when `orthogonal_hh` (docs/reference.md, "Models").

  One step of the recurrence (generation) is a sequence of length 1, with the same
  parameters and code as training."""
  hidden: int
  orthogonal_hh: bool = True
  unroll: int = 1
  remat_chunk: int = 0  # > 0: recompute activations in segments of this many steps
  impl: str = 'scan'    # 'scan' (lstm_layer, any device) | 'cudnn' (CUDA GPUs)
  precision: str = 'default'  # see PRECISIONS (and cudnn_lstm_layer)

  @nn.compact
  def __call__(self, xs, initial_state=None):
    """xs: [T, B, I] -> ([T, B, H], final (h, c)); initial_state (h0, c0) [B, H] each,
    zeros by default.

    xs may instead be a `ProjectedInput`, for callers whose input has structure that
    makes x_t W_ih^T cheaper to compute than by materialising x_t.
    """
    hid = self.hidden
    init = uniform(hid ** -0.5)
    structured = isinstance(xs, ProjectedInput)
    w_ih = self.param('w_ih', init, (4 * hid, xs.size if structured else xs.shape[-1]))
    w_hh = self.param('w_hh', nn.initializers.orthogonal() if self.orthogonal_hh else init,
                      (4 * hid, hid))
    b_ih = self.param('b_ih', init, (4 * hid,))
    b_hh = self.param('b_hh', init, (4 * hid,))
    if initial_state is None:
      zeros = jnp.zeros(xs.batch_shape + (hid,) if structured else xs.shape[1:-1] + (hid,))
      initial_state = (zeros, zeros)
    if structured:
      return lstm_recurrence(xs.project(w_ih) + (b_ih + b_hh), w_hh, *initial_state,
                             unroll=self.unroll, precision=self.precision)
    if self.impl == 'cudnn':
      return cudnn_lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, *initial_state, self.precision)
    return lstm_layer(xs, w_ih, w_hh, b_ih, b_hh, *initial_state, unroll=self.unroll,
                      remat_chunk=self.remat_chunk, precision=self.precision)


@dataclasses.dataclass(frozen=True)
class ProjectedInput:
  """An LSTM input given by what it contributes to the gates rather than by its values.

  size: the input width I (shapes W_ih); batch_shape: the [B] (or [B1, B2]) of the state;
  project: W_ih [4H, I] -> x W_ih^T, [T, *batch_shape, 4H] (at the layer's precision:
  the caller's business).
  """
  size: int
  batch_shape: Tuple[int, ...]
  project: Callable[[jax.Array], jax.Array]


class LSTM(nn.Module):
  """A stack of LSTM layers with dropout between layers (not after the last one)."""
  hidden: int
  num_layers: int = 1
  dropout: float = 0.0
  orthogonal_hh: bool = True
  remat_chunk: int = 0  # see lstm_layer
  impl: str = 'scan'    # see LSTMLayer
  precision: str = 'default'  # see PRECISIONS

  @nn.compact
  def __call__(self, xs, *, deterministic: bool, initial_states=None):
    """xs: [T, B, I] (or a ProjectedInput for the first layer) -> ([T, B, H], the final
    (h, c) of every layer).

    initial_states: optional per-layer (h0, c0), each [B, H]; zero states by default
    (every chunk starts from zero, docs/reference.md, "Evaluation"). Passing the final
    states back in with the next steps continues the sequence (generation, one step at
    a time).
    """
    states = []
    for layer in range(self.num_layers):
      if layer > 0:
        xs = Dropout(self.dropout)(xs, deterministic=deterministic)
      state = None if initial_states is None else initial_states[layer]
      xs, state = LSTMLayer(self.hidden, self.orthogonal_hh, remat_chunk=self.remat_chunk,
                            impl=self.impl, precision=self.precision,
                            name=f'layer_{layer}')(xs, state)
      states.append(state)
    return xs, states


class InputEmbedding(nn.Module):
  """Linear(D, E) followed by dropout: the step embedding of every model."""
  features: int
  dropout: float = 0.0
  precision: str = 'default'  # see PRECISIONS

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    return Dropout(self.dropout)(TorchDense(self.features, precision=self.precision)(x),
                                 deterministic=deterministic)


# ----------------------------------------------------------------------------------------
# Output heads: the distribution of the D elements of a step, as one of the two
# distributions below. Training reads log_prob(y); generation draws with sample(key, tau),
# which samples p^(1/tau) per element: tau < 1 sharpens, tau > 1 flattens, tau = 1 is the
# model itself.
# ----------------------------------------------------------------------------------------
class GMM(NamedTuple):
  """Independent univariate Gaussian mixtures: means, log_stds, logits [..., K]."""
  means: jax.Array
  log_stds: jax.Array
  logits: jax.Array

  def log_prob(self, y):
    """y [...] -> log p(y) [...]."""
    return likelihoods.gmm_log_prob(y, self.means, self.log_stds, self.logits)

  def sample(self, key, temperature=1.0):
    """A draw [...]: the component from logits / tau, then its Gaussian with the standard
    deviation times sqrt(tau) (exact p^(1/tau) for a single Gaussian)."""
    k_comp, k_noise = jax.random.split(key)
    comp = jax.random.categorical(k_comp, self.logits / temperature)[..., None]
    pick = lambda a: jnp.take_along_axis(a, comp, axis=-1)[..., 0]
    noise = jax.random.normal(k_noise, comp.shape[:-1])
    return pick(self.means) + jnp.exp(pick(self.log_stds)) * jnp.sqrt(temperature) * noise


class Bernoulli(NamedTuple):
  """Independent binary elements: logits [...]."""
  logits: jax.Array

  def log_prob(self, y):
    """y [...] in {0, 1} -> log p(y) [...]."""
    return likelihoods.bernoulli_log_prob(y, self.logits)

  def sample(self, key, temperature=1.0):
    """A draw [...] in {0., 1.} with probability sigmoid(logits / tau) of a one."""
    return jax.random.bernoulli(key, jax.nn.sigmoid(self.logits / temperature)).astype(
        jnp.float32)


class GMMHead(nn.Module):
  """Factorised univariate Gaussian mixture per element (the reference GMCriterion).

  Weights are stored [D, K, d_inp], the transpose of the reference's [d_inp, D, K], with
  the same initial distribution (its fan_in D*K, docs/reference.md, "Models"), and
  biases [D, K], for (mean, log_std, logits). Output-major storage is XLA:CPU's fast
  orientation for the weight gradient and leaves Adam without transposes: the speech
  F-RNN step is ~17% faster than with [d_inp, D, K]. A shared input multiplies the
  kernel as one [D*K, d_inp] matrix: as a 3-d einsum XLA:CPU transposed the whole
  kernel at every call, which dominated a generation step (8x slower for speech).
  """
  num_elements: int
  num_mixtures: int
  per_element: bool = False
  precision: str = 'default'  # see PRECISIONS

  @nn.compact
  def __call__(self, inp, element=None):
    """inp [..., d_inp] -> GMM with [..., D, K] parameters. With `per_element`, inp is
    [..., D, d_inp] and element i reads its own row; with `element` i (an index, also
    traced), inp [..., d_inp] is element i's alone and the GMM is element i's, [..., K]
    (auto-regressive generation, one element at a time)."""
    d, k, d_inp = self.num_elements, self.num_mixtures, inp.shape[-1]
    init = lambda key, shape: jnp.moveaxis(torch_kaiming_uniform(key, (d_inp, d, k)), 0, -1)
    outs = []
    for name in ('mean', 'log_std', 'logits'):
      weight = self.param(f'{name}_kernel', init, (d, k, d_inp))
      bias = self.param(f'{name}_bias', nn.initializers.zeros, (d, k))
      if element is not None:
        out = einsum('...d,md->...m', inp, weight[element], self.precision) + bias[element]
      elif self.per_element:
        out = einsum('...id,imd->...im', inp, weight, self.precision) + bias
      else:
        out = einsum('...d,nd->...n', inp, weight.reshape(d * k, d_inp), self.precision)
        out = out.reshape(inp.shape[:-1] + (d, k)) + bias
      outs.append(out)
    return GMM(*outs)


class BernoulliHead(nn.Module):
  """Per-element logistic output (the reference BernoulliCriterion); weight [D, d_inp]."""
  num_elements: int
  per_element: bool = False
  precision: str = 'default'  # see PRECISIONS

  @nn.compact
  def __call__(self, inp, element=None):
    """inp [..., d_inp] -> Bernoulli with [..., D] logits; `per_element` and `element`
    as for GMMHead ([...] logits for one element)."""
    kernel = self.param('kernel', torch_kaiming_uniform, (self.num_elements, inp.shape[-1]))
    bias = self.param('bias', nn.initializers.zeros, (self.num_elements,))
    if element is not None:
      return Bernoulli(einsum('...d,d->...', inp, kernel[element], self.precision)
                       + bias[element])
    eq = '...id,id->...i' if self.per_element else '...d,id->...i'
    return Bernoulli(einsum(eq, inp, kernel, self.precision) + bias)


class CoordinateGMMHead(nn.Module):
  """The handwriting GaussianMixture(K, d_inp) of one coordinate (docs/reference.md,
  "Models"): mean and logits are Linear(d_inp, K) with a bias, log_std Linear(d_inp, K)
  without one (3 d_inp K + 2K parameters), all with PyTorch's Linear init."""
  num_mixtures: int
  precision: str = 'default'  # see PRECISIONS

  @nn.compact
  def __call__(self, inp):
    """inp [..., d_inp] -> GMM with [..., K] parameters."""
    dense = lambda name, bias=True: TorchDense(self.num_mixtures, bias, self.precision,
                                               name=name)
    return GMM(dense('mean')(inp), dense('log_std', False)(inp), dense('logits')(inp))


class BivariateGMM(NamedTuple):
  """A correlated Gaussian mixture over two coordinates: means, log_stds [..., K, 2],
  corr [..., K] in (-1, 1), logits [..., K]."""
  means: jax.Array
  log_stds: jax.Array
  corr: jax.Array
  logits: jax.Array

  def log_prob(self, y):
    """y [..., 2] -> [..., 2]: log p(y_0) and log p(y_1 | y_0) (summing to the joint)."""
    return jnp.stack(likelihoods.bivariate_gmm_log_prob(
        y[..., 0], y[..., 1], self.means, self.log_stds, self.corr, self.logits), axis=-1)

  def sample(self, key, temperature=1.0):
    """A draw [..., 2]: the component from logits / tau, then its Gaussian with the
    covariance times tau (y_0, then y_1 given y_0)."""
    k_comp, k_noise = jax.random.split(key)
    comp = jax.random.categorical(k_comp, self.logits / temperature)[..., None]  # [..., 1]
    pick = lambda a: jnp.take_along_axis(a, comp, axis=-1)[..., 0]
    mean1, mean2 = pick(self.means[..., 0]), pick(self.means[..., 1])
    std1, std2 = (jnp.exp(pick(self.log_stds[..., i])) * jnp.sqrt(temperature)
                  for i in range(2))
    corr = pick(self.corr)
    eps1, eps2 = jax.random.normal(k_noise, (2,) + comp.shape[:-1])
    y1 = mean1 + std1 * eps1
    y2 = mean2 + std2 * (corr * eps1 + jnp.sqrt(1.0 - jnp.square(corr)) * eps2)
    return jnp.stack([y1, y2], axis=-1)


class BivariateGMMHead(nn.Module):
  """A correlated bivariate Gaussian mixture of K components for (dx, dy), an option
  beyond the paper (whose handwriting heads are two independent 1-D mixtures):
  Linear(d_inp, 2K) means and log_stds (the latter without bias, as CoordinateGMMHead),
  Linear(d_inp, K) correlations (CORR_LIMIT * tanh, so that 1 - corr^2 never rounds
  to 0) and logits."""
  CORR_LIMIT = 1.0 - 1e-4
  num_mixtures: int
  precision: str = 'default'  # see PRECISIONS

  @nn.compact
  def __call__(self, inp):
    """inp [..., d_inp] -> BivariateGMM."""
    k = self.num_mixtures
    dense = lambda n, name, bias=True: TorchDense(n, bias, self.precision, name=name)(inp)
    pairs = lambda a: a.reshape(a.shape[:-1] + (k, 2))
    return BivariateGMM(pairs(dense(2 * k, 'mean')), pairs(dense(2 * k, 'log_std', False)),
                        self.CORR_LIMIT * jnp.tanh(dense(k, 'corr')), dense(k, 'logits'))


def make_head(kind: str, num_elements: int, num_mixtures: int, per_element: bool = False,
              precision: str = 'default', name: Optional[str] = None):
  """The domain's output head: 'gmm' for real values, 'bernoulli' for binary ones."""
  if kind == 'gmm':
    return GMMHead(num_elements, num_mixtures, per_element, precision, name=name)
  if kind == 'bernoulli':
    return BernoulliHead(num_elements, per_element, precision, name=name)
  raise ValueError(f'config.model.output must be "gmm" or "bernoulli", got {kind!r}')


class MLP(nn.Module):
  """Dropout -> Dense -> (LReLU -> Dropout -> Dense)*: the SRNN prior/posterior nets.

  `hidden` empty gives the MIDI form, a single dropout + linear layer."""
  hidden: Sequence[int]
  features: int
  dropout: float = 0.0
  precision: str = 'default'  # see PRECISIONS

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    x = Dropout(self.dropout)(x, deterministic=deterministic)
    for width in self.hidden:
      x = lrelu(TorchDense(width, precision=self.precision)(x))
      x = Dropout(self.dropout)(x, deterministic=deterministic)
    return TorchDense(self.features, precision=self.precision)(x)
