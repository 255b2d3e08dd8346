"""High-level recurrent cores: they turn the inputs x[<=t] (and, for the SRNN and
Z-forcing cores, the targets through a backward LSTM) into one context vector h_t per step.

`__call__` runs whole chunks (training, scoring) and returns a dict with
  h:          [T, B, H] context for the output model,
  kl:         [T, B] analytic KL(q || p) summed over the latent units (0 for the RNN),
  log_ratio:  [T, B] log p(z) - log s(z) of the sampled z under its sampling
              distribution s (the posterior, or the prior itself), summed over units;
              what importance-weighted bounds add to log p(y | z);
  aux_cost:   [T, B] (Z-forcing with an auxiliary cost only) a term of the training
              loss that no reported likelihood or bound includes.
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


# ----------------------------------------------------------------------------------------
# Diagonal-Gaussian latents, shared by the SRNN and Z-forcing cores. A Gaussian is
# (mu, logvar), each [..., Z].
# ----------------------------------------------------------------------------------------
def gaussian_params(net, inp, deterministic: bool):
  """(mu, logvar) [..., Z] of a prior or posterior net, its 2Z outputs clamped."""
  out = jnp.clip(net(inp, deterministic=deterministic), -LATENT_CLAMP, LATENT_CLAMP)
  return tuple(jnp.split(out, 2, axis=-1))


def sampling_gaussian(latent_source: str, posterior, prior):
  """The Gaussian z is drawn from: the posterior (training, ELBO) or the prior (the
  prior-sampled estimate)."""
  if latent_source == 'posterior':
    return posterior
  if latent_source == 'prior':
    return prior
  raise ValueError(f'latent_source must be "posterior" or "prior", got {latent_source!r}')


def reparameterise(gaussian, eps):
  """z = mu + exp(logvar / 2) * eps."""
  mu, logvar = gaussian
  return mu + jnp.exp(0.5 * logvar) * eps


def prior_step(prior, key, temperature, z=None):
  """(z [..., Z], log_pz [...]) of one generation step: z drawn from the prior with its
  standard deviations times sqrt(temperature), unless given (teacher-forced scoring);
  log_pz its log-density under the prior itself."""
  mu, logvar = prior
  if z is None:
    z = mu + jnp.exp(0.5 * logvar) * jnp.sqrt(temperature) * jax.random.normal(key, mu.shape)
  return z, likelihoods.diag_gaussian_log_prob(z, mu, logvar).sum(-1)


def latent_terms(z, posterior, prior, source):
  """(kl, log_ratio) [...]: analytic KL(q || p) and log p(z) - log s(z) for the z drawn
  from `source`, each summed over the Z units."""
  kl = likelihoods.diag_gaussian_kl(*posterior, *prior).sum(-1)
  log_ratio = (likelihoods.diag_gaussian_log_prob(z, *prior)
               - likelihoods.diag_gaussian_log_prob(z, *source)).sum(-1)
  return kl, log_ratio


def draw_latent(core: nn.Module, latent_source: str, posterior, prior):
  """(z [..., Z], kl [...], log_ratio [...]): z drawn with the core's 'latent' rng from
  the posterior or the prior (sampling_gaussian) and recorded as the core's
  'intermediates' z, with latent_terms' KL and log p(z) - log s(z)."""
  source = sampling_gaussian(latent_source, posterior, prior)
  eps = jax.random.normal(core.make_rng('latent'), source[0].shape, source[0].dtype)
  z = reparameterise(source, eps)
  core.sow('intermediates', 'z', z)
  return (z, *latent_terms(z, posterior, prior, source))


class RNNCore(nn.Module):
  """h = LSTM(emb(x)): the deterministic core (dropout on h is the output's business)."""
  d_rnn: int
  d_emb: int
  n_layer: int = 1
  dropout: float = 0.0
  remat_chunk: int = 0  # LSTM activations recomputed per segment of this many steps
  lstm_impl: str = 'scan'  # 'scan' | 'cudnn' (layers.LSTMLayer)
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS
  inter_layer_dropout: bool = True  # dropout between LSTM layers (handwriting: none)
  output_dropped = False

  def setup(self):
    self.inp_emb = layers.InputEmbedding(self.d_emb, self.dropout, self.precision)
    self.rnn = layers.LSTM(self.d_rnn, self.n_layer,
                           self.dropout if self.inter_layer_dropout else 0.0,
                           remat_chunk=self.remat_chunk, impl=self.lstm_impl,
                           precision=self.precision)

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

  def __call__(self, x, y, *, deterministic: bool, latent_source: str = 'posterior'):
    emb = lambda v: self.inp_emb(v, deterministic=deterministic)
    fwd, _ = self.fwd_rnn(emb(x), deterministic=deterministic)  # [T, B, H]
    bwd, _ = self.bwd_rnn(emb(y)[::-1], deterministic=deterministic)
    bwd = bwd[::-1]  # [T, B, H]
    prior = gaussian_params(self.prior, fwd, deterministic)
    post = gaussian_params(self.post, jnp.concatenate([bwd, fwd], axis=-1), deterministic)
    z, kl, log_ratio = draw_latent(self, latent_source, post, prior)  # z [T, B, Z]
    h, _ = self.lat_rnn(jnp.concatenate([fwd, z], axis=-1), deterministic=deterministic)
    h = self.h_dropout(h, deterministic=deterministic)
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
    prior = gaussian_params(self.prior, fwd[0], True)  # [B, Z] each
    z, log_pz = prior_step(prior, key, temperature, z)
    h, lat_states = self.lat_rnn(jnp.concatenate([fwd, z[None]], axis=-1),
                                 deterministic=True, initial_states=lat_states)
    return (fwd_states, lat_states), h[0], log_pz


class ZForcingCore(nn.Module):
  """The Z-forcing SRNN of Goyal et al. (2017), as the reference's handwriting
  `srnn_zforce` (docs/reference.md, "Models"): z_t feeds the forward recurrence, so
  prior and posterior see z_<t and the steps must run one after another.

  bwd = flip(LSTM_b(flip(emb(y)))) as in SRNNCore; then, from f_0 = 0, for each t:
    prior p(z_t | f_t), posterior q(z_t | bwd_t, f_t) (input [bwd, f]),
    z_t = mu + sigma * eps_t from the posterior (or the prior, `latent_source`),
    h_t = LSTMCell([emb(x_t), gen_mod(z_t)], state), and f_{t+1} = h_t.
  The reference's handwriting nets have no dropout in prior, posterior, gen_mod or on
  h_t; `dropout` applies to the input embedding only. The cell (an LSTMCell there) keeps
  PyTorch's uniform W_hh; the backward LSTM's is orthogonal.

  aux_weight > 0 adds Goyal et al.'s auxiliary cost (the reference has none): a net
  predicts bwd_t from z_t as a diagonal Gaussian, and `aux_cost` [T, B] = aux_weight *
  -log N(bwd_t; aux(z_t)) joins the training loss only. bwd_t is a fixed target there
  (stop_gradient): the cost shapes z, and cannot be lowered by shrinking bwd.
  """
  d_rnn: int
  d_emb: int
  d_lat: int
  d_mlp: int  # M: prior/posterior/aux hidden width and gen_mod's output
  dropout: float = 0.0
  aux_weight: float = 0.0
  remat_chunk: int = 0  # backward LSTM activations recomputed per segment of this many steps
  lstm_impl: str = 'scan'  # backward LSTM: 'scan' | 'cudnn' (layers.LSTMLayer)
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS
  output_dropped = True  # no dropout on h_t (as the reference's handwriting SRNN's)

  def setup(self):
    self.inp_emb = layers.InputEmbedding(self.d_emb, self.dropout, self.precision)
    self.bwd_rnn = layers.LSTM(self.d_rnn, 1, remat_chunk=self.remat_chunk,
                               impl=self.lstm_impl, precision=self.precision)
    mlp = lambda features: layers.MLP((self.d_mlp,), features, 0.0, self.precision)
    self.prior = mlp(2 * self.d_lat)
    self.post = mlp(2 * self.d_lat)
    self.gen_mod = layers.TorchDense(self.d_mlp, precision=self.precision)
    self.fwd_cell = layers.LSTMLayer(self.d_rnn, orthogonal_hh=False, precision=self.precision)
    if self.aux_weight > 0:
      self.aux = mlp(2 * self.d_rnn)

  def _advance(self, state, emb, z):
    """The cell's step: state (h, c) [B, H], emb [B, E], z [B, Z] -> (h [B, H], state)."""
    inp = jnp.concatenate([emb, self.gen_mod(z)], axis=-1)  # [B, E + M]
    h, state = self.fwd_cell(inp[None], state)  # [1, B, H]
    return h[0], state

  def __call__(self, x, y, *, deterministic: bool, latent_source: str = 'posterior'):
    emb = lambda v: self.inp_emb(v, deterministic=deterministic)
    bwd, _ = self.bwd_rnn(emb(y)[::-1], deterministic=deterministic)
    bwd = bwd[::-1]  # [T, B, H]
    eps = jax.random.normal(self.make_rng('latent'), bwd.shape[:-1] + (self.d_lat,))

    def body(core, state, inputs):  # one step t; state: the cell's (h, c) [B, H]
      emb_t, bwd_t, eps_t = inputs
      f = state[0]
      prior = gaussian_params(core.prior, f, True)
      post = gaussian_params(core.post, jnp.concatenate([bwd_t, f], axis=-1), True)
      z = reparameterise(sampling_gaussian(latent_source, post, prior), eps_t)  # [B, Z]
      h, state = core._advance(state, emb_t, z)
      return state, (h, z, post, prior)

    scan = nn.scan(body, variable_broadcast='params', split_rngs={'params': False})
    _, (h, z, post, prior) = scan(self, self.initial_carry(x.shape[1]), (emb(x), bwd, eps))
    self.sow('intermediates', 'z', z)  # [T, B, Z]
    kl, log_ratio = latent_terms(z, post, prior, sampling_gaussian(latent_source, post, prior))
    out = dict(h=h, kl=kl, log_ratio=log_ratio)
    if self.aux_weight > 0:
      aux = gaussian_params(self.aux, z, True)  # over bwd's H units
      log_p = likelihoods.diag_gaussian_log_prob(jax.lax.stop_gradient(bwd), *aux).sum(-1)
      out['aux_cost'] = -self.aux_weight * log_p  # [T, B]
    return out

  def initial_carry(self, batch: int):
    """The cell's zero (h, c) [B, H]: f_0 = 0 at a chunk's first step."""
    zeros = jnp.zeros((batch, self.d_rnn), jnp.float32)
    return zeros, zeros

  def step(self, carry, x, key, temperature=1.0, z=None):
    """One step: x [B, D] -> (carry, h [B, H], log_pz [B]); z_t drawn from the prior
    p(z_t | f_t) unless given, as SRNNCore.step."""
    prior = gaussian_params(self.prior, carry[0], True)  # [B, Z] each
    z, log_pz = prior_step(prior, key, temperature, z)
    h, carry = self._advance(carry, self.inp_emb(x, deterministic=True), z)
    return carry, h, log_pz


class HandwritingSRNNCore(nn.Module):
  """The handwriting SRNN (docs/reference.md, "Models"), which
  differs from the speech/MIDI one: all LSTMs single-layer (n_layer is ignored), only
  the backward one with an orthogonal W_hh; prior p(z_t | fwd_t) and posterior
  q(z_t | bwd_t, fwd_t) are Linear-LReLU-Linear without dropout, clamped like the SRNN's;
  and h_t = forward_h([emb(x_t), gen_mod(z_t)]) reads the input embedding and the
  projected latent, not fwd_t. h is not dropped out (`output_dropped`: the heads must
  not drop it either). `latent_source` and `step` as SRNNCore.
  """
  d_rnn: int
  d_emb: int
  d_lat: int
  d_mlp: int
  dropout: float = 0.0  # of the input embedding only
  precision: str = 'default'  # matmul precision, see layers.PRECISIONS
  output_dropped = True

  def setup(self):
    self.inp_emb = layers.InputEmbedding(self.d_emb, self.dropout, self.precision)
    lstm = lambda orthogonal, name: layers.LSTM(self.d_rnn, 1, orthogonal_hh=orthogonal,
                                                precision=self.precision, name=name)
    self.bwd_rnn = lstm(True, 'bwd_rnn')
    self.forward_z = lstm(False, 'forward_z')  # the context of the prior and posterior
    self.forward_h = lstm(False, 'forward_h')  # the context of the output
    self.prior = layers.MLP((self.d_mlp,), 2 * self.d_lat, 0.0, self.precision)
    self.post = layers.MLP((self.d_mlp,), 2 * self.d_lat, 0.0, self.precision)
    self.gen_mod = layers.TorchDense(self.d_mlp, precision=self.precision)

  def _output_context(self, emb_x, z, states=None):
    """h = forward_h([emb(x), gen_mod(z)]) [T, B, H], and forward_h's final states."""
    return self.forward_h(jnp.concatenate([emb_x, self.gen_mod(z)], axis=-1),
                          deterministic=True, initial_states=states)

  def __call__(self, x, y, *, deterministic: bool, latent_source: str = 'posterior'):
    emb_x = self.inp_emb(x, deterministic=deterministic)  # [T, B, E]
    emb_y = self.inp_emb(y, deterministic=deterministic)
    fwd, _ = self.forward_z(emb_x, deterministic=True)  # [T, B, H]
    bwd = self.bwd_rnn(emb_y[::-1], deterministic=True)[0][::-1]  # [T, B, H]
    prior = gaussian_params(self.prior, fwd, True)
    post = gaussian_params(self.post, jnp.concatenate([bwd, fwd], axis=-1), True)
    z, kl, log_ratio = draw_latent(self, latent_source, post, prior)  # z [T, B, Z]
    h, _ = self._output_context(emb_x, z)
    return dict(h=h, kl=kl, log_ratio=log_ratio)

  def initial_carry(self, batch: int):
    """The zero states (forward_z, forward_h) of a sequence's first step."""
    return zero_states(1, batch, self.d_rnn), zero_states(1, batch, self.d_rnn)

  def step(self, carry, x, key, temperature=1.0, z=None):
    """One step: x [B, D] -> (carry, h [B, H], log_pz [B]); z as SRNNCore.step."""
    z_states, h_states = carry
    emb_x = self.inp_emb(x[None], deterministic=True)  # [1, B, E]
    fwd, z_states = self.forward_z(emb_x, deterministic=True, initial_states=z_states)
    prior = gaussian_params(self.prior, fwd[0], True)  # [B, Z] each
    z, log_pz = prior_step(prior, key, temperature, z)
    h, h_states = self._output_context(emb_x, z[None], h_states)
    return (z_states, h_states), h[0], log_pz
