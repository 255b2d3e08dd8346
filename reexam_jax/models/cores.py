"""High-level recurrent cores: they turn the inputs x[<=t] (and, for the SRNN, the
targets through a backward LSTM) into one context vector h_t per step.

Both return a dict with
  h:          [T, B, H] context for the output model,
  kl:         [T, B] analytic KL(q || p) summed over the latent units (0 for the RNN),
  log_ratio:  [T, B] log p(z) - log s(z) of the sampled z under its sampling
              distribution s (the posterior, or the prior itself), summed over units;
              what importance-weighted bounds add to log p(y | z).
and the attribute `output_dropped` says whether h already went through dropout.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from reexam_jax import layers
from reexam_jax import likelihoods

LATENT_CLAMP = 8.0  # prior and posterior parameters are clamped to [-8, 8] (spec §1.4)


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

  @nn.compact
  def __call__(self, x, y, *, deterministic: bool, latent_source: str = 'posterior'):
    del y, latent_source  # the deterministic core never sees targets
    emb = layers.InputEmbedding(self.d_emb, self.dropout, self.precision, name='inp_emb')(
        x, deterministic=deterministic)
    h = layers.LSTM(self.d_rnn, self.n_layer, self.dropout, remat_chunk=self.remat_chunk,
                    impl=self.lstm_impl, precision=self.precision, name='rnn')(
        emb, deterministic=deterministic)  # [T, B, H]
    zeros = jnp.zeros(h.shape[:-1], h.dtype)
    return dict(h=h, kl=zeros, log_ratio=zeros)


class SRNNCore(nn.Module):
  """The simplified SRNN of the paper (spec §1.4).

  A forward LSTM over emb(x), a backward LSTM over emb(y) (so the posterior of z_t sees
  y[t:], the current target included), prior p(z_t | fwd_t), posterior
  q(z_t | bwd_t, fwd_t), and h_t = dropout(LSTM([fwd_t, z_t])).

  `latent_source` picks where z comes from: 'posterior' (training and the ELBO, as the
  reference) or 'prior' (the prior-sampled estimate, and generation).
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

  @nn.compact
  def __call__(self, x, y, *, deterministic: bool, latent_source: str = 'posterior'):
    inp_emb = layers.InputEmbedding(self.d_emb, self.dropout, self.precision, name='inp_emb')
    lstm = lambda name, n_layer=self.n_layer, dropout=self.dropout: layers.LSTM(
        self.d_rnn, n_layer, dropout, remat_chunk=self.remat_chunk, impl=self.lstm_impl,
        precision=self.precision, name=name)
    fwd = lstm('fwd_rnn')(inp_emb(x, deterministic=deterministic),
                          deterministic=deterministic)  # [T, B, H]
    bwd = lstm('bwd_rnn')(inp_emb(y, deterministic=deterministic)[::-1],
                          deterministic=deterministic)[::-1]  # [T, B, H]

    hidden = (self.d_mlp,) if self.d_mlp else ()
    latent_params = lambda net, inp: jnp.split(
        jnp.clip(net(inp, deterministic=deterministic), -LATENT_CLAMP, LATENT_CLAMP), 2, -1)
    mu_p, logvar_p = latent_params(
        layers.MLP(hidden, 2 * self.d_lat, self.dropout, self.precision, name='prior'), fwd)
    mu_q, logvar_q = latent_params(
        layers.MLP(hidden, 2 * self.d_lat, self.dropout, self.precision, name='post'),
        jnp.concatenate([bwd, fwd], axis=-1))  # [T, B, Z] each

    if latent_source == 'posterior':
      mu_s, logvar_s = mu_q, logvar_q
    elif latent_source == 'prior':
      mu_s, logvar_s = mu_p, logvar_p
    else:
      raise ValueError(f'latent_source must be "posterior" or "prior", got {latent_source!r}')
    eps = jax.random.normal(self.make_rng('latent'), mu_s.shape, mu_s.dtype)
    z = mu_s + jnp.exp(0.5 * logvar_s) * eps  # [T, B, Z]

    h = lstm('lat_rnn', 1, 0.0)(
        jnp.concatenate([fwd, z], axis=-1), deterministic=deterministic)
    h = layers.Dropout(self.dropout)(h, deterministic=deterministic)

    kl = likelihoods.diag_gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).sum(-1)
    log_ratio = (likelihoods.diag_gaussian_log_prob(z, mu_p, logvar_p)
                 - likelihoods.diag_gaussian_log_prob(z, mu_s, logvar_s)).sum(-1)
    return dict(h=h, kl=kl, log_ratio=log_ratio)
