"""The models of the paper: a high-level core (RNN, SRNN, Z-forcing SRNN) plus an output model
(factorised, hierarchical LSTM, hierarchical masked MLP, delta split). The registry,
name -> ModelSpec, is `experiments.MODELS` (light, no JAX: the configs and the FLOP
counter read it too); `build_model` builds one from a model config.
"""
from typing import Any, Dict, List, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from reexam_jax import errors
from reexam_jax import experiments
from reexam_jax import layers
from reexam_jax.models import cores
from reexam_jax.models import outputs


class SequenceModel(nn.Module):
  """core(x, y) -> h; output(h, y) -> per-element log p. See `__call__`."""
  core: nn.Module
  output: nn.Module

  def __call__(self, x, y, *, deterministic: bool = True,
               latent_source: str = 'posterior') -> Dict[str, jax.Array]:
    """Scores targets y given inputs x (y shifted by one step: y[t] = x[t+1]).

    Args:
      x, y: [T, B, D].
    Returns:
      log_prob: [T, B, D] log-density of each element given everything before it in
        the model's order (given the sampled z for latent models);
      kl: [T, B] analytic KL of the posterior from the prior (zeros for RNN cores);
      log_ratio: [T, B] log p(z) - log s(z) for the sampled z (importance weights).
    """
    out = self.core(x, y, deterministic=deterministic, latent_source=latent_source)
    out['log_prob'] = self.output(out.pop('h'), y, deterministic=deterministic)
    return out


def is_latent(name: str) -> bool:
  """True for models with stochastic latent variables (reported as bounds)."""
  return experiments.MODELS[name].latent


def _check_lstm_impl(cfg) -> None:
  if cfg.lstm_impl not in layers.LSTM_IMPLS:
    raise ValueError(f'config.model.lstm_impl: {cfg.lstm_impl!r} is not one of '
                     f'{layers.LSTM_IMPLS}')
  if cfg.lstm_impl == 'cudnn':
    if jax.default_backend() != 'gpu':
      raise ValueError("config.model.lstm_impl='cudnn' needs a CUDA GPU; this JAX runs on "
                       f"{jax.default_backend()!r} (use the default 'scan')")
    if cfg.remat_chunk:
      raise ValueError("config.model.remat_chunk applies to lstm_impl='scan' only")


def split_seed(cfg, seed: int) -> int:
  """The seed of the delta-RNN's random split: cfg.split_seed, or the run's seed when
  that is -1 (the default), so that every training seed also draws its own split."""
  if cfg.split_seed == -1:
    return seed
  if cfg.split_seed < 0:
    raise errors.UserError(f'config.model.split_seed={cfg.split_seed}: use -1 (the '
                           'run\'s seed) or a seed >= 0')
  return cfg.split_seed


def _zforcing_core(cfg, precision: str) -> cores.ZForcingCore:
  """The Z-forcing core of cfg: one cell and one backward layer, an MLP prior and
  posterior (d_mlp > 0); zf_aux_weight, the auxiliary cost's weight, 0 when absent."""
  if cfg.n_layer != 1 or cfg.d_mlp <= 0:
    raise errors.UserError(f'{cfg.name}: the Z-forcing core has one LSTM layer each way and '
                           f'MLP prior/posterior nets (n_layer=1, d_mlp > 0); got '
                           f'n_layer={cfg.n_layer}, d_mlp={cfg.d_mlp}')
  return cores.ZForcingCore(cfg.d_rnn, cfg.d_emb, cfg.d_lat, cfg.d_mlp, cfg.dropout,
                            cfg.get('zf_aux_weight', 0.0), cfg.remat_chunk, cfg.lstm_impl,
                            precision)


def build_model(cfg, seed: int = 0, precision: str = 'default') -> SequenceModel:
  """Builds the model named by `cfg.name` from a model ConfigDict (see configs).

  seed: the run's seed (config.seed); the delta-RNN random split is drawn from it when
  cfg.split_seed is -1. Callers that train, restore or score a run must pass it.
  precision: of every matmul, one of layers.PRECISIONS: config.matmul_precision for
  training, 'highest' (true float32) for evaluation.
  """
  if cfg.name not in experiments.MODELS:
    raise ValueError(f'config.model.name: unknown model {cfg.name!r}; '
                     f'choose one of {sorted(experiments.MODELS)}')
  if precision not in layers.PRECISIONS:
    raise errors.UserError(f'--config.matmul_precision={precision!r}: choose one of '
                           f'{list(layers.PRECISIONS)}')
  _check_lstm_impl(cfg)
  spec = experiments.MODELS[cfg.name]
  if spec.core in ('rnn', 'hw_rnn'):
    core = cores.RNNCore(cfg.d_rnn, cfg.d_emb, cfg.n_layer, cfg.dropout, cfg.remat_chunk,
                         cfg.lstm_impl, precision,
                         inter_layer_dropout=spec.core == 'rnn')
  elif spec.core == 'hw_srnn':
    core = cores.HandwritingSRNNCore(cfg.d_rnn, cfg.d_emb, cfg.d_lat, cfg.d_mlp,
                                     cfg.dropout, precision)
  elif spec.core == 'srnn':
    core = cores.SRNNCore(cfg.d_rnn, cfg.d_emb, cfg.d_lat, cfg.d_mlp, cfg.n_layer,
                          cfg.dropout, cfg.remat_chunk, cfg.lstm_impl,
                          precision)
  else:
    core = _zforcing_core(cfg, precision)
  # Heads of models whose core leaves h undropped apply the model's dropout to h.
  input_dropout = 0.0 if core.output_dropped else cfg.dropout
  n_mix = spec.n_mix(cfg)
  if spec.handwriting:
    if cfg.d_data != outputs.Handwriting.d_data:
      raise errors.UserError(f'--config.model.d_data={cfg.d_data}: the handwriting models '
                             'read (pen, dx, dy) steps, d_data=3')
    output = outputs.Handwriting(spec.output == 'handwriting_hier', n_mix, input_dropout,
                                 cfg.bivariate, precision)
  elif spec.output == 'factorised':
    output = outputs.Factorised(cfg.d_data, cfg.head, n_mix, input_dropout, precision)
  elif spec.output == 'hier_lstm':
    output = outputs.HierLSTM(cfg.d_data, cfg.d_rnn, cfg.d_emb, cfg.head, n_mix,
                              spec.n_low_layer(cfg), cfg.dropout, cfg.low_dropout, precision)
  elif spec.output == 'hier_made':
    output = outputs.HierMADE(cfg.d_data, cfg.d_rnn, cfg.d_nade, cfg.head, n_mix,
                              spec.n_low_layer(cfg), input_dropout, cfg.dropout,
                              cfg.joint_layernorm, precision)
  else:
    leak, rest = outputs.delta_split(cfg.d_data, spec.split, cfg.chk_len, cfg.d_leak,
                                     split_seed(cfg, seed))
    output = outputs.DeltaSplit(cfg.d_data, cfg.d_rnn, cfg.head, tuple(leak.tolist()),
                                tuple(rest.tolist()), n_mix, cfg.dropout, precision)
  return SequenceModel(core, output)


def leaked_elements(model: SequenceModel) -> Optional[List[int]]:
  """The element indices a delta-RNN predicts first and conditions the rest on (in
  split order); None for the other models."""
  if isinstance(model.output, outputs.DeltaSplit):
    return list(model.output.leak)
  return None


def init_params(model: SequenceModel, rng: jax.Array, d_data: int) -> Any:
  """Initial parameters, from a tiny dummy batch (shapes do not depend on T or B)."""
  dummy = jnp.zeros((2, 1, d_data), jnp.float32)
  keys = dict(zip(('params', 'latent', 'dropout'), jax.random.split(rng, 3)))
  return model.init(keys, dummy, dummy)['params']


def count_params(model: SequenceModel, params) -> int:
  """Number of free parameters: all stored scalars, less the MADE weights that the
  autoregressive mask zeroes (those never influence the model)."""
  total = sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
  if isinstance(model.output, outputs.HierMADE):
    total -= model.output.num_masked_weights(params['output']['w0'].shape[1])
  return total


def reference_param_count(model: SequenceModel, params) -> int:
  """The count the reference logs (docs/reference.md, "Parameter counts"): equal to
  `count_params` except for the MADE heads, where its formula adds one per unmasked W0
  row and counts the output criterion twice."""
  total = count_params(model, params)
  if isinstance(model.output, outputs.HierMADE):
    out = params['output']
    total += model.output.num_unmasked_rows(out['w0'].shape[1])
    total += sum(int(p.size) for p in jax.tree_util.tree_leaves(out['crit']))
  return total
