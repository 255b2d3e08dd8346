"""Generation with the model itself: a SequenceModel one time step at a time.

Training and scoring run whole chunks (`SequenceModel.__call__`); generation runs the
same modules with the same parameters one step at a time (the cores' and output
models' `step` methods, through `model.apply`), feeding each drawn step back as the next
input, without dropout. A step either draws y_t or, given y_t, scores it (teacher
forcing), which lets tests check it against the model's log_prob exactly.

Temperature tau sharpens (tau < 1) or flattens (tau > 1) every sampled conditional as
p^(1/tau): Bernoulli and mixture-weight logits are divided by tau, and Gaussian standard
deviations (output components and the SRNN prior over z) are multiplied by sqrt(tau),
which is exact for a single Gaussian. tau = 1 samples the trained model. Log-probs are
always under the model itself (tau = 1).
"""
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp


def initial_carry(model, batch: int) -> Any:
  """The core's zero recurrent state, where every chunk starts (docs/reference.md,
  "Evaluation")."""
  return model.core.initial_carry(batch)


def _bound_step(model, carry, x_prev, key, temperature, y, z):
  """`step` on the bound model (model.apply's `method`)."""
  k_lat, k_out = jax.random.split(key)
  carry, h, log_pz = model.core.step(carry, x_prev, k_lat, temperature, z)
  y, log_prob = model.output.step(h, k_out, temperature, y)
  return carry, y, log_prob, log_pz


def step(model, params, carry, x_prev, key, temperature=1.0,
         y: Optional[jax.Array] = None, z: Optional[jax.Array] = None):
  """One time step: x_prev [B, D] -> (carry, y [B, D], log_prob [B, D], log_pz [B]).

  y given: scored, not sampled (teacher forcing). SRNN: z_t [B, Z] is drawn from the
  prior p(z_t | x_<=t) unless given; log_pz is its log prior density (0 for RNNs).
  """
  return model.apply({'params': params}, carry, x_prev, key, temperature, y, z,
                     method=_bound_step)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 6))
def sample(model, params, key, num_samples: int, num_steps: int, temperature=1.0,
           reset_every: int = 0) -> Any:
  """Ancestral samples of `model`: dict(y [T, N, D], log_prob [T, N] = log p(y_t | ...)).

  The first input is a zero step. `reset_every` > 0 zeroes the recurrent state every
  that many steps, exactly like the chunked density that training and evaluation use
  (each chunk starts from zero, reading the previous chunk's last step); 0 never resets.
  """
  zero = initial_carry(model, num_samples)

  def body(carry, inp):
    t, k = inp
    state, x_prev = carry
    if reset_every:
      state = jax.tree_util.tree_map(
          lambda s, s0: jnp.where(t % reset_every == 0, s0, s), state, zero)
    state, y, log_prob, _ = step(model, params, state, x_prev, k, temperature)
    return (state, y), (y, log_prob.sum(-1))

  x0 = jnp.zeros((num_samples, model.output.d_data), jnp.float32)
  keys = jax.random.split(key, num_steps)
  _, (ys, lps) = jax.lax.scan(body, (zero, x0), (jnp.arange(num_steps), keys))
  return dict(y=ys, log_prob=lps)
