"""benchmarks/flops.py against independent counts on tiny configs:
  * the dot_general ops of the traced training forward (jaxpr, scan bodies times their
    length), exactly, for every kind of core and output model;
  * XLA's own cost analysis of a compiled one-step F-RNN (XLA counts a while body once
    and adds element-wise work, hence T = 1 and a tolerance);
  * the traced gradient, for the 'training step = 3 x forward' convention.
"""
import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reexam_jax import experiments
from reexam_jax import models

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     'benchmarks', 'flops.py')
_SPEC = importlib.util.spec_from_file_location('benchmarks_flops', _PATH)
flops = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(flops)

TINY = 'tgt_len=3,batch_size=2,d_rnn=12,d_emb=8,d_lat=6,d_nade=4'
# case id -> (dataset, model, overrides). MIDI cases train with dropout 0.5 (literal hier
# low level unless low_dropout=step), speech cases with dropout 0 (restructured).
CASES = {
    'f_rnn_2layer_gmm': ('timit', 'f_rnn', 'd_data=5,n_layer=2,n_mix=3'),
    'f_srnn_mlp_gmm': ('timit', 'f_srnn', 'd_data=5,d_mlp=10'),
    'srnn_flat_bernoulli': ('nottingham', 'srnn_flat', 'd_data=1'),
    'rnn_hier_literal': ('nottingham', 'rnn_hier', 'd_data=5,n_layer=2,n_low_layer=2'),
    'rnn_hier_step': ('nottingham', 'rnn_hier', 'd_data=5,n_layer=2,n_low_layer=2,low_dropout=step'),
    'srnn_hier_gmm': ('timit', 'srnn_hier', 'd_data=5,d_mlp=10'),
    'rnn_hier_made': ('perm_timit', 'rnn_hier', 'd_data=5,n_low_layer=3'),
    'delta_interleave': ('timit', 'delta_rnn_interleave', 'd_data=7,chk_len=3'),
    'delta_random': ('nottingham', 'delta_rnn_random', 'd_data=7,d_leak=2'),
}


def _config(case):
  dataset, model, arg = CASES[case]
  return experiments.get_config(dataset, model, f'{TINY},{arg}')


def _loss_fn(config):
  """(params, x, y) -> training loss (dropout on, posterior samples), and abstract
  inputs: shapes are all tracing needs, and eager initialisation would be slow."""
  model = models.build_model(config.model)
  d = config.model.d_data
  params = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0), d))
  x = jax.ShapeDtypeStruct((config.tgt_len, config.batch_size, d), jnp.float32)
  rngs = dict(dropout=jax.random.key(1), latent=jax.random.key(2))

  def loss(p, x, y):
    out = model.apply({'params': p}, x, y, deterministic=False, rngs=rngs)
    return -out['log_prob'].sum() + out['kl'].sum()
  return loss, (params, x, x)


def _dot_flops(jaxpr) -> int:
  """2 * (output size) * (contracted size) summed over dot_generals, scans unrolled."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      (lhs_contract, _), _ = eqn.params['dimension_numbers']
      lhs_shape = eqn.invars[0].aval.shape
      total += (2 * math.prod(eqn.outvars[0].aval.shape)
                * math.prod(lhs_shape[i] for i in lhs_contract))
    elif eqn.primitive.name == 'while':
      raise AssertionError('a while loop: trip count unknown to the counter')
    elif eqn.primitive.name == 'cond':
      total += max(_dot_flops(b.jaxpr) for b in eqn.params['branches'])
    else:
      times = eqn.params['length'] if eqn.primitive.name == 'scan' else 1
      for value in eqn.params.values():
        if hasattr(value, 'eqns') or hasattr(value, 'jaxpr'):
          total += times * _dot_flops(getattr(value, 'jaxpr', value))
  return total


def _formula_dots(config) -> int:
  """Forward FLOPs that the formulas say run as matmuls in our training step."""
  parts = flops.forward_flops(config, restructured=flops.runs_restructured(config))
  return sum(v for k, v in parts.items() if k not in flops.BROADCAST_TERMS)


@pytest.mark.parametrize('case', sorted(CASES))
def test_forward_matches_traced_matmuls(case):
  config = _config(case)
  loss, args = _loss_fn(config)
  assert _dot_flops(jax.make_jaxpr(loss)(*args).jaxpr) == _formula_dots(config)


def test_low_dropout_changes_executed_flops_only():
  """Model FLOPs follow the reference's algorithm; low_dropout=step runs fewer."""
  literal, step = _config('rnn_hier_literal'), _config('rnn_hier_step')
  assert not flops.runs_restructured(literal) and flops.runs_restructured(step)
  res_literal, res_step = flops.train_step_flops(literal), flops.train_step_flops(step)
  assert res_literal['executed'] == res_literal['total']
  assert res_step['total'] == res_literal['total']
  assert res_step['executed'] < res_step['total']


def test_xla_cost_analysis_one_step_lstm():
  """XLA's flop count of a compiled F-RNN forward with T = 1 (no loop to miscount) and
  widths where matmuls dominate the element-wise work."""
  config = experiments.get_config(
      'nottingham', 'f_rnn', 'tgt_len=1,batch_size=8,d_data=32,d_emb=64,d_rnn=64,dropout=0.0')
  loss, args = _loss_fn(config)
  xla = jax.jit(loss).lower(*args).compile().cost_analysis()['flops']
  formula = sum(flops.forward_flops(config).values())
  np.testing.assert_allclose(xla, formula, rtol=0.05)


@pytest.mark.parametrize('case', ['f_rnn_2layer_gmm', 'rnn_hier_literal', 'f_srnn_mlp_gmm'])
def test_gradient_is_about_twice_forward(case):
  """The backward's matmuls: ~2x the forward's (the data embedding's d input is the
  only matmul not run), so a training step is ~3x forward, as the convention says."""
  config = _config(case)
  loss, args = _loss_fn(config)
  train = _dot_flops(jax.make_jaxpr(jax.grad(loss))(*args).jaxpr)
  np.testing.assert_allclose(train, 3 * _formula_dots(config), rtol=0.05)
