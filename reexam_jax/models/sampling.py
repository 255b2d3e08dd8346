"""One time step of every model, as pure functions of the Flax parameter dicts.

Training and scoring run whole chunks at once (`SequenceModel.__call__`); generation
needs the same models one step at a time, feeding each sampled step back as the next
input. The functions here read the parameters that `models.init_params` creates
(PyTorch-layout LSTMs: w_ih [4H, I], w_hh [4H, H], b_ih, b_hh, gate order i, f, g, o)
and never dropout (inference). `step` either samples y_t or, given y_t, scores it
(teacher forcing), so tests can check it against the model's log_prob exactly.

Temperature tau sharpens (tau < 1) or flattens (tau > 1) every sampled conditional as
p^(1/tau): Bernoulli and mixture-weight logits are divided by tau, and Gaussian standard
deviations (output components and the SRNN prior over z) are multiplied by sqrt(tau),
which is exact for a single Gaussian. tau = 1 samples the trained model. Log-probs are
always under the model itself (tau = 1).
"""
import functools
from typing import Any, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from reexam_jax import layers
from reexam_jax import likelihoods
from reexam_jax.models import cores
from reexam_jax.models import outputs

State = Tuple[jax.Array, jax.Array]  # LSTM (h, c), each [B, H]


# ----------------------------------------------------------------------------------------
# Layers.
# ----------------------------------------------------------------------------------------
def dense(p, x):
  """TorchDense: x [..., I] @ kernel [O, I]^T (+ bias)."""
  y = x @ p['kernel'].T
  return y + p['bias'] if 'bias' in p else y


def mlp(p, x):
  """layers.MLP without dropout: TorchDense_0 .. TorchDense_n, LReLU between."""
  n = len(p)
  for j in range(n - 1):
    x = layers.lrelu(dense(p[f'TorchDense_{j}'], x))
  return dense(p[f'TorchDense_{n - 1}'], x)


def layer_norm(scale, bias, x, eps=1e-5):
  """LayerNorm over the last axis."""
  mean = x.mean(-1, keepdims=True)
  var = jnp.maximum(jnp.square(x).mean(-1, keepdims=True) - jnp.square(mean), 0.0)
  return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


def lstm_cell(p, x, state: State) -> State:
  """One PyTorch LSTM step: x [B, I], state (h, c) [B, H] -> new (h, c)."""
  h, c = state
  gates = x @ p['w_ih'].T + h @ p['w_hh'].T + p['b_ih'] + p['b_hh']  # [B, 4H]
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


def lstm_stack(p, x, states: List[State]):
  """layers.LSTM for one step: x [B, I] -> (top h [B, H], new per-layer states)."""
  new = []
  for layer, state in enumerate(states):
    state = lstm_cell(p[f'layer_{layer}'], x, state)
    new.append(state)
    x = state[0]
  return x, new


def zero_states(p, batch: int) -> List[State]:
  """Zero (h, c) for every layer of an LSTM stack's params."""
  states = []
  for layer in range(len(p)):
    zeros = jnp.zeros((batch, p[f'layer_{layer}']['w_hh'].shape[1]), jnp.float32)
    states.append((zeros, zeros))
  return states


# ----------------------------------------------------------------------------------------
# Heads: a distribution is ('gmm', means, log_stds, logits) with [..., K] parameters or
# ('bernoulli', logits); the element axes are the caller's.
# ----------------------------------------------------------------------------------------
def head_dist(kind: str, p, inp, per_element: bool = False):
  """Distribution of a layers.make_head head: inp [B, d_inp] (or [B, D, d_inp])."""
  if kind == 'gmm':
    eq = '...id,imd->...im' if per_element else '...d,imd->...im'
    return ('gmm',) + tuple(jnp.einsum(eq, inp, p[f'{n}_kernel']) + p[f'{n}_bias']
                            for n in ('mean', 'log_std', 'logits'))
  eq = '...id,id->...i' if per_element else '...d,id->...i'
  return ('bernoulli', jnp.einsum(eq, inp, p['kernel']) + p['bias'])


def dist_log_prob(dist, y):
  """log p(y) under the model's distribution (temperature 1)."""
  if dist[0] == 'gmm':
    return likelihoods.gmm_log_prob(y, *dist[1:])
  return likelihoods.bernoulli_log_prob(y, dist[1])


def dist_sample(dist, key, temperature: float):
  """A sample of p^(1/tau) (see the module docstring), shaped like the elements."""
  if dist[0] == 'bernoulli':
    return jax.random.bernoulli(key, jax.nn.sigmoid(dist[1] / temperature)).astype(
        jnp.float32)
  means, log_stds, logits = dist[1:]
  k_comp, k_noise = jax.random.split(key)
  comp = jax.random.categorical(k_comp, logits / temperature)[..., None]
  pick = lambda a: jnp.take_along_axis(a, comp, axis=-1)[..., 0]
  noise = jax.random.normal(k_noise, comp.shape[:-1])
  return pick(means) + jnp.exp(pick(log_stds)) * jnp.sqrt(temperature) * noise


def _sample_or_score(dist, key, temperature, y):
  """(y, log p(y)): y sampled when None (generation), else the given target."""
  if y is None:
    y = dist_sample(dist, key, temperature)
  return y, dist_log_prob(dist, y)


# ----------------------------------------------------------------------------------------
# Output models: (params, h [B, H], key, temperature, y [B, D] | None)
#   -> (y [B, D], log_prob [B, D]).
# ----------------------------------------------------------------------------------------
def factorised_step(module: outputs.Factorised, p, h, key, temperature, y=None):
  return _sample_or_score(head_dist(module.head, p['crit'], h), key, temperature, y)


def _element_dist(kind: str, p, inp, i):
  """Distribution of element i from its own predictor inp [B, d_inp], for heads stored
  per element ([D, K, d_inp] GMM) or shared by all elements ([1, d_inp] Bernoulli)."""
  if kind == 'bernoulli':
    return ('bernoulli', inp @ p['kernel'][0] + p['bias'][0])
  return ('gmm',) + tuple(inp @ p[f'{n}_kernel'][i].T + p[f'{n}_bias'][i]
                          for n in ('mean', 'log_std', 'logits'))


def _scan_elements(body, carry, d: int, key, y):
  """Runs body(carry, (i, key_i, y_i)) -> (carry, (y_i, lp_i)) over the D elements."""
  batch = jax.tree_util.tree_leaves(carry)[0].shape[0]
  ys = jnp.zeros((d, batch), jnp.float32) if y is None else y.T
  _, (ys, lps) = jax.lax.scan(body, carry, (jnp.arange(d), jax.random.split(key, d), ys))
  return ys.T, lps.T  # [B, D] each


def hier_lstm_step(module: outputs.HierLSTM, p, h, key, temperature, y=None):
  """Element i is predicted from the low-level LSTM after elements < i (init_h for 0)."""
  batch = h.shape[0]
  bcast = lambda v: jnp.broadcast_to(v, (batch, v.shape[-1]))
  states = [(bcast(p['init_h'][l]), bcast(p['init_c'][l])) for l in range(module.n_low_layer)]

  def body(carry, inp):
    states, pred = carry
    i, k, y_i = inp
    dist = _element_dist(module.head, p['crit'], pred, i)
    y_i, lp = _sample_or_score(dist, k, temperature, None if y is None else y_i)
    x = jnp.concatenate([y_i[:, None] * p['emb_low_kernel'] + p['emb_low_bias'], h], axis=-1)
    pred, states = lstm_stack(p['rnn_low'], x, states)
    return (states, pred), (y_i, lp)

  return _scan_elements(body, (states, bcast(p['init_h'][-1])), module.d_data, key, y)


def hier_made_step(module: outputs.HierMADE, p, h, key, temperature, y=None):
  """Block i of the masked MLP reads h and y_<i only, so elements are drawn in order,
  each from its own block (per-block LayerNorm; the joint one is not a density). The
  running y holds zeros from element i on, so W0 needs no mask here."""
  if module.joint_layernorm:
    raise NotImplementedError('sampling hier_made with joint_layernorm=True: its '
                              'LayerNorm leaks later elements, so it has no ancestral order')
  d = module.d_data

  def body(y_buf, inp):
    i, k, y_i = inp
    u = jnp.concatenate([h, y_buf[:, :d - 1]], axis=-1)  # [B, H+D-1]
    a = u @ p['w0'][i, :, :, 0] + p['b0'][i]  # [B, d_nade]
    a = jax.nn.relu(layer_norm(p['norm_0']['scale'][i], p['norm_0']['bias'][i], a))
    for layer in range(1, module.n_low_layer):
      a = a @ p[f'w{layer}'][i] + p[f'b{layer}'][i]
      norm = p[f'norm_{layer}']
      a = jax.nn.relu(layer_norm(norm['scale'][i], norm['bias'][i], a))
    dist = _element_dist(module.head, p['crit'], a, i)
    y_i, lp = _sample_or_score(dist, k, temperature, None if y is None else y_i)
    return y_buf.at[:, i].set(y_i), (y_i, lp)

  return _scan_elements(body, jnp.zeros((h.shape[0], d), jnp.float32), d, key, y)


def delta_step(module: outputs.DeltaSplit, p, h, key, temperature, y=None):
  """The leaked elements from h, then the rest from [h, y_leak]."""
  leak, rest = np.asarray(module.leak), np.asarray(module.rest)
  k_leak, k_rest = jax.random.split(key)
  y_leak, lp_leak = _sample_or_score(head_dist(module.head, p['crit_leak'], h), k_leak,
                                     temperature, None if y is None else y[:, leak])
  r = jnp.concatenate([h, y_leak], axis=-1)
  for i in range(2):
    norm = p[f'rest_norm_{i}']
    r = jax.nn.relu(layer_norm(norm['scale'], norm['bias'], dense(p[f'rest_dense_{i}'], r)))
  y_rest, lp_rest = _sample_or_score(head_dist(module.head, p['crit_rest'], r), k_rest,
                                     temperature, None if y is None else y[:, rest])
  put = lambda a, b: jnp.zeros((h.shape[0], module.d_data), a.dtype).at[:, leak].set(
      a).at[:, rest].set(b)
  return put(y_leak, y_rest), put(lp_leak, lp_rest)


_OUTPUT_STEPS = {outputs.Factorised: factorised_step, outputs.HierLSTM: hier_lstm_step,
                 outputs.HierMADE: hier_made_step, outputs.DeltaSplit: delta_step}


# ----------------------------------------------------------------------------------------
# Whole models.
# ----------------------------------------------------------------------------------------
def init_carry(model, params, batch: int):
  """Zero recurrent state of the core (every chunk starts from zero, spec §1.1)."""
  p = params['core']
  if isinstance(model.core, cores.SRNNCore):
    return zero_states(p['fwd_rnn'], batch), zero_states(p['lat_rnn'], batch)[0]
  return zero_states(p['rnn'], batch)


def step(model, params, carry, x_prev, key, temperature: float = 1.0,
         y: Optional[jax.Array] = None, z: Optional[jax.Array] = None):
  """One time step: x_prev [B, D] -> (carry, y [B, D], log_prob [B, D], log_pz [B]).

  y given: scored, not sampled (teacher forcing). SRNN: z_t [B, Z] is drawn from the
  prior p(z_t | x_<=t) unless given; log_pz is its log prior density (0 for RNNs).
  """
  output_step = _OUTPUT_STEPS.get(type(model.output))
  if output_step is None:
    raise NotImplementedError(f'no step-wise sampler for {type(model.output).__name__}')
  p = params['core']
  k_lat, k_out = jax.random.split(key)
  emb = dense(p['inp_emb']['TorchDense_0'], x_prev)  # [B, E]
  if isinstance(model.core, cores.SRNNCore):
    fwd_states, lat_state = carry
    fwd, fwd_states = lstm_stack(p['fwd_rnn'], emb, fwd_states)  # [B, H]
    prior = jnp.clip(mlp(p['prior'], fwd), -cores.LATENT_CLAMP, cores.LATENT_CLAMP)
    mu, logvar = jnp.split(prior, 2, axis=-1)  # [B, Z] each
    if z is None:
      std = jnp.exp(0.5 * logvar) * jnp.sqrt(temperature)
      z = mu + std * jax.random.normal(k_lat, mu.shape)
    log_pz = likelihoods.diag_gaussian_log_prob(z, mu, logvar).sum(-1)
    lat_state = lstm_cell(p['lat_rnn']['layer_0'], jnp.concatenate([fwd, z], -1), lat_state)
    h, carry = lat_state[0], (fwd_states, lat_state)
  else:
    h, carry = lstm_stack(p['rnn'], emb, carry)
    log_pz = jnp.zeros(h.shape[:1])
  y, log_prob = output_step(model.output, params['output'], h, k_out, temperature, y)
  return carry, y, log_prob, log_pz


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 6))
def sample(model, params, key, num_samples: int, num_steps: int, temperature=1.0,
           reset_every: int = 0) -> Any:
  """Ancestral samples of `model`: dict(y [T, N, D], log_prob [T, N] = log p(y_t | ...)).

  The first input is a zero step. `reset_every` > 0 zeroes the recurrent state every
  that many steps, exactly like the chunked density that training and evaluation use
  (each chunk starts from zero, reading the previous chunk's last step); 0 never resets.
  """
  d = model.output.d_data
  zero = init_carry(model, params, num_samples)

  def body(carry, inp):
    t, k = inp
    state, x_prev = carry
    if reset_every:
      state = jax.tree_util.tree_map(
          lambda s, s0: jnp.where(t % reset_every == 0, s0, s), state, zero)
    state, y, log_prob, _ = step(model, params, state, x_prev, k, temperature)
    return (state, y), (y, log_prob.sum(-1))

  x0 = jnp.zeros((num_samples, d), jnp.float32)
  keys = jax.random.split(key, num_steps)
  _, (ys, lps) = jax.lax.scan(body, (zero, x0), (jnp.arange(num_steps), keys))
  return dict(y=ys, log_prob=lps)
