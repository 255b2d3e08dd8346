"""Building blocks shared by every model: a PyTorch-layout LSTM stack, dense layers with
PyTorch's initialisation, LReLU, and the output heads.

Tensors are time-major: [T, B, ...]. Parameter shapes follow PyTorch's storage so that
counts equal the reference's exactly (two LSTM biases, per-element heads).
"""
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from reexam_jax import likelihoods


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
  PyTorch's fan_in = shape[1] * prod(shape[2:]) (not the input width; spec §1.2)."""
  fan_in = 1
  for size in shape[1:]:
    fan_in *= size
  return uniform(fan_in ** -0.5)(key, shape, dtype)


def lrelu(x):
  """Leaky ReLU with slope 1/3, clamped to [-3, 3] (the SRNN MLP activation)."""
  return jnp.clip(jnp.where(x >= 0, x, x / 3.0), -3.0, 3.0)


class TorchDense(nn.Module):
  """nn.Linear with PyTorch's U(±1/sqrt(fan_in)) init of weight and bias; kernel [I, O]."""
  features: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    bound = x.shape[-1] ** -0.5
    kernel = self.param('kernel', uniform(bound), (x.shape[-1], self.features))
    y = x @ kernel
    if self.use_bias:
      y = y + self.param('bias', uniform(bound), (self.features,))
    return y


# ----------------------------------------------------------------------------------------
# LSTM.
# ----------------------------------------------------------------------------------------
def lstm_recurrence(gates_x, w_hh, h0, c0, unroll: int = 1):
  """Runs the LSTM recurrence given the input part of the gates.

  Args:
    gates_x: [T, B, 4H] = x_t W_ih^T + b_ih + b_hh, gate order (i, f, g, o).
    w_hh: [4H, H] recurrent weight (PyTorch layout).
    h0, c0: [B, H] initial state.
  Returns:
    hs: [T, B, H] hidden outputs, and the final (h, c).
  """
  w_hh_t = w_hh.T  # [H, 4H]

  def step(carry, gx):
    h, c = carry
    gates = gx + h @ w_hh_t
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h

  (h, c), hs = jax.lax.scan(step, (h0, c0), gates_x, unroll=unroll)
  return hs, (h, c)


class LSTMLayer(nn.Module):
  """One nn.LSTM layer: W_ih [4H, I], W_hh [4H, H], b_ih and b_hh [4H], all U(±1/sqrt(H));
  W_hh re-initialised orthogonally when `orthogonal_hh` (spec §1.1)."""
  hidden: int
  orthogonal_hh: bool = True
  unroll: int = 1

  @nn.compact
  def __call__(self, xs, initial_state=None):
    """xs: [T, B, I] -> ([T, B, H], final (h, c))."""
    hid = self.hidden
    init = uniform(hid ** -0.5)
    w_ih = self.param('w_ih', init, (4 * hid, xs.shape[-1]))
    w_hh = self.param('w_hh', nn.initializers.orthogonal() if self.orthogonal_hh else init,
                      (4 * hid, hid))
    b_ih = self.param('b_ih', init, (4 * hid,))
    b_hh = self.param('b_hh', init, (4 * hid,))
    if initial_state is None:
      zeros = jnp.zeros(xs.shape[1:-1] + (hid,), xs.dtype)
      initial_state = (zeros, zeros)
    gates_x = xs @ w_ih.T + (b_ih + b_hh)  # [T, B, 4H], hoisted out of the recurrence
    return lstm_recurrence(gates_x, w_hh, *initial_state, unroll=self.unroll)


class LSTM(nn.Module):
  """A stack of LSTM layers with dropout between layers (not after the last one)."""
  hidden: int
  num_layers: int = 1
  dropout: float = 0.0
  orthogonal_hh: bool = True

  @nn.compact
  def __call__(self, xs, *, deterministic: bool, initial_states=None):
    """xs: [T, B, I] -> [T, B, H].

    initial_states: optional per-layer (h0, c0), each [B, H]; zero states by default
    (every chunk starts from zero in the reference, spec §1.1).
    """
    for layer in range(self.num_layers):
      if layer > 0:
        xs = nn.Dropout(self.dropout)(xs, deterministic=deterministic)
      state = None if initial_states is None else initial_states[layer]
      xs, _ = LSTMLayer(self.hidden, self.orthogonal_hh, name=f'layer_{layer}')(xs, state)
    return xs


class InputEmbedding(nn.Module):
  """Linear(D, E) followed by dropout: the step embedding of every model."""
  features: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    return nn.Dropout(self.dropout)(TorchDense(self.features)(x), deterministic=deterministic)


# ----------------------------------------------------------------------------------------
# Output heads: per-element log-densities [..., D].
# ----------------------------------------------------------------------------------------
class GMMHead(nn.Module):
  """Factorised univariate Gaussian mixture per element (the reference GMCriterion).

  Weights are stored [d_inp, D, K] and biases [D, K] for (mean, log_std, logits). With
  `per_element`, the input is [..., D, d_inp] and each element has its own input.
  """
  num_elements: int
  num_mixtures: int
  per_element: bool = False

  @nn.compact
  def __call__(self, inp, y):
    """inp: [..., d_inp] or [..., D, d_inp]; y: [..., D] -> log p [..., D]."""
    shape = (inp.shape[-1], self.num_elements, self.num_mixtures)
    bias_shape = (self.num_elements, self.num_mixtures)
    eq = '...id,dim->...im' if self.per_element else '...d,dim->...im'
    outs = []
    for name in ('mean', 'log_std', 'logits'):
      weight = self.param(f'{name}_kernel', torch_kaiming_uniform, shape)
      bias = self.param(f'{name}_bias', nn.initializers.zeros, bias_shape)
      outs.append(jnp.einsum(eq, inp, weight) + bias)
    return likelihoods.gmm_log_prob(y, *outs)


class BernoulliHead(nn.Module):
  """Per-element logistic output (the reference BernoulliCriterion); weight [D, d_inp]."""
  num_elements: int
  per_element: bool = False

  @nn.compact
  def __call__(self, inp, y):
    """inp: [..., d_inp] or [..., D, d_inp]; y: [..., D] -> log p [..., D]."""
    kernel = self.param('kernel', torch_kaiming_uniform, (self.num_elements, inp.shape[-1]))
    bias = self.param('bias', nn.initializers.zeros, (self.num_elements,))
    eq = '...id,id->...i' if self.per_element else '...d,id->...i'
    return likelihoods.bernoulli_log_prob(y, jnp.einsum(eq, inp, kernel) + bias)


def make_head(kind: str, num_elements: int, num_mixtures: int, per_element: bool = False,
              name: Optional[str] = None):
  """The domain's output head: 'gmm' for real values, 'bernoulli' for binary ones."""
  if kind == 'gmm':
    return GMMHead(num_elements, num_mixtures, per_element, name=name)
  if kind == 'bernoulli':
    return BernoulliHead(num_elements, per_element, name=name)
  raise ValueError(f'config.model.output must be "gmm" or "bernoulli", got {kind!r}')


class MLP(nn.Module):
  """Dropout -> Dense -> (LReLU -> Dropout -> Dense)*: the SRNN prior/posterior nets.

  `hidden` empty gives the MIDI form, a single dropout + linear layer."""
  hidden: Sequence[int]
  features: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    for width in self.hidden:
      x = lrelu(TorchDense(width)(x))
      x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    return TorchDense(self.features)(x)
