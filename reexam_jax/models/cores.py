"""High-level recurrent cores: they turn the inputs x[<=t] (and, for the SRNN, the
targets through a backward LSTM) into one context vector h_t per step.

`__call__` runs whole chunks (training, scoring) and returns a dict with
  h:          [T, B, H] context for the output model,
  kl:         [T, B] analytic KL(q || p) summed over the latent units (0 for the RNN),
  log_ratio:  [T, B] log p(z) - log s(z) of the sampled z under its sampling
              distribution s (the posterior, or the prior itself), summed over units;
              what importance-weighted bounds add to log p(y | z).
`step` runs one step of generation with the same submodules and parameters, from the
state `initial_carry` gives or the previous step returned. The attribute
`output_dropped` says whether h already went through dropout.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from reexam_jax import layers
from reexam_jax import likelihoods

# Prior and posterior parameters are clamped to [-8, 8] (docs/reference.md, "Models").
LATENT_CLAMP = 8.0


def zero_states(num_layers: int, batch: int, hidden: int):
  """Zero (h, c) [B, H] for each layer of an LSTM stack: the state every chunk starts
  from (docs/reference.md, "Evaluation")."""
  zeros = jnp.zeros((batch, hidden), jnp.float32)
  return [(zeros, zeros)] * num_layers


class RNNCore(nn.Module):
  """h = LSTM(emb(x)): the deterministic core (dropout on h is the output's business)."""
  d_rnn: int
  d_emb: int
  n_layer: int = 1
  dropout: float = 0.0
  remat_chunk: int = 0  # LSTM activations recomputed per segment of this many steps
  lstm_impl: str = 'scan'  # 'scan' | 'cudnn' (layers.LSTMLayer)
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS
  output_dropped = False

  def setup(self):
    self.inp_emb = layers.InputEmbedding(self.d_emb, self.dropout, self.precision)
    self.rnn = layers.LSTM(self.d_rnn, self.n_layer, self.dropout, remat_chunk=self.remat_chunk,
                           impl=self.lstm_impl, precision=self.precision)

  def __call__(self, x, y, *, deterministic: bool, latent_source: str = 'posterior'):
    del y, latent_source  # the deterministic core never sees targets
    h, _ = self.rnn(self.inp_emb(x, deterministic=deterministic),
                    deterministic=deterministic)  # [T, B, H]
    zeros = jnp.zeros(h.shape[:-1], h.dtype)
    return dict(h=h, kl=zeros, log_ratio=zeros)

  def initial_carry(self, batch: int):
    """The zero LSTM states of a chunk's first step."""
    return zero_states(self.n_layer, batch, self.d_rnn)

  def step(self, carry, x, key, temperature=1.0, z=None):
    """One step: x [B, D] -> (carry, h [B, H], log_pz [B] = 0); no latents (key,
    temperature and z are the SRNN's)."""
    del key, temperature, z
    h, carry = self.rnn(self.inp_emb(x[None], deterministic=True), deterministic=True,
                        initial_states=carry)  # [1, B, H]
    return carry, h[0], jnp.zeros(h.shape[1:2], h.dtype)


class SRNNCore(nn.Module):
  """The simplified SRNN of the paper (docs/reference.md, "Models").

  A forward LSTM over emb(x), a backward LSTM over emb(y) (so the posterior of z_t sees
  y[t:], the current target included), prior p(z_t | fwd_t), posterior
  q(z_t | bwd_t, fwd_t), and h_t = dropout(LSTM([fwd_t, z_t])).

  `latent_source` picks where z comes from: 'posterior' (training and the ELBO, as the
  reference) or 'prior' (the prior-sampled estimate). Generation (`step`) draws z_t from
  the prior.
  """
  d_rnn: int
  d_emb: int
  d_lat: int
  d_mlp: int = 0  # 0: single linear prior/posterior (MIDI); >0: one LReLU hidden layer
  n_layer: int = 1
  dropout: float = 0.0
  remat_chunk: int = 0  # LSTM activations recomputed per segment of this many steps
  lstm_impl: str = 'scan'  # 'scan' | 'cudnn' (layers.LSTMLayer)
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS
  output_dropped = True

  def setup(self):
    self.inp_emb = layers.InputEmbedding(self.d_emb, self.dropout, self.precision)
    lstm = lambda n_layer, dropout: layers.LSTM(
        self.d_rnn, n_layer, dropout, remat_chunk=self.remat_chunk, impl=self.lstm_impl,
        precision=self.precision)
    self.fwd_rnn = lstm(self.n_layer, self.dropout)
    self.bwd_rnn = lstm(self.n_layer, self.dropout)
    self.lat_rnn = lstm(1, 0.0)
    hidden = (self.d_mlp,) if self.d_mlp else ()
    self.prior = layers.MLP(hidden, 2 * self.d_lat, self.dropout, self.precision)
    self.post = layers.MLP(hidden, 2 * self.d_lat, self.dropout, self.precision)
    # Flax's name for a compact module's first Dropout: the RNG path of its masks.
    self.h_dropout = layers.Dropout(self.dropout, name='Dropout_0')

  def _latent_params(self, net, inp, deterministic):
    """(mu, logvar) [..., Z] of the prior or posterior net, clamped."""
    out = jnp.clip(net(inp, deterministic=deterministic), -LATENT_CLAMP, LATENT_CLAMP)
    return jnp.split(out, 2, axis=-1)

  def __call__(self, x, y, *, deterministic: bool, latent_source: str = 'posterior'):
    emb = lambda v: self.inp_emb(v, deterministic=deterministic)
    fwd, _ = self.fwd_rnn(emb(x), deterministic=deterministic)  # [T, B, H]
    bwd, _ = self.bwd_rnn(emb(y)[::-1], deterministic=deterministic)
    bwd = bwd[::-1]  # [T, B, H]
    mu_p, logvar_p = self._latent_params(self.prior, fwd, deterministic)
    mu_q, logvar_q = self._latent_params(
        self.post, jnp.concatenate([bwd, fwd], axis=-1), deterministic)  # [T, B, Z] each

    if latent_source == 'posterior':
      mu_s, logvar_s = mu_q, logvar_q
    elif latent_source == 'prior':
      mu_s, logvar_s = mu_p, logvar_p
    else:
      raise ValueError(f'latent_source must be "posterior" or "prior", got {latent_source!r}')
    eps = jax.random.normal(self.make_rng('latent'), mu_s.shape, mu_s.dtype)
    z = mu_s + jnp.exp(0.5 * logvar_s) * eps  # [T, B, Z]

    h, _ = self.lat_rnn(jnp.concatenate([fwd, z], axis=-1), deterministic=deterministic)
    h = self.h_dropout(h, deterministic=deterministic)

    kl = likelihoods.diag_gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).sum(-1)
    log_ratio = (likelihoods.diag_gaussian_log_prob(z, mu_p, logvar_p)
                 - likelihoods.diag_gaussian_log_prob(z, mu_s, logvar_s)).sum(-1)
    return dict(h=h, kl=kl, log_ratio=log_ratio)

  def initial_carry(self, batch: int):
    """The zero states (forward LSTM stack, latent LSTM) of a chunk's first step."""
    return (zero_states(self.n_layer, batch, self.d_rnn),
            zero_states(1, batch, self.d_rnn))

  def step(self, carry, x, key, temperature=1.0, z=None):
    """One step: x [B, D] -> (carry, h [B, H], log_pz [B]).

    z_t [B, Z] is drawn from the prior p(z_t | x_<=t) with its standard deviations times
    sqrt(temperature), unless given (teacher-forced scoring); log_pz is its log density
    under the prior itself.
    """
    fwd_states, lat_states = carry
    fwd, fwd_states = self.fwd_rnn(self.inp_emb(x[None], deterministic=True),
                                   deterministic=True, initial_states=fwd_states)  # [1, B, H]
    mu, logvar = (a[0] for a in self._latent_params(self.prior, fwd, True))  # [B, Z] each
    if z is None:
      std = jnp.exp(0.5 * logvar) * jnp.sqrt(temperature)
      z = mu + std * jax.random.normal(key, mu.shape)
    log_pz = likelihoods.diag_gaussian_log_prob(z, mu, logvar).sum(-1)
    h, lat_states = self.lat_rnn(jnp.concatenate([fwd, z[None]], axis=-1),
                                 deterministic=True, initial_states=lat_states)
    return (fwd_states, lat_states), h[0], log_pz
