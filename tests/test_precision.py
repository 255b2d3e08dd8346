"""Training matmul precision (config.matmul_precision, the `precision` of every layer
that models.build_model sets): it reaches every matmul of the forward and backward pass,
including the custom-VJP LSTM's, BF16_BF16_F32 really computes with bfloat16 operands
(explicit casts, layers.einsum, so also on CPUs, where XLA ignores the dot algorithm
alone), evaluation stays true float32, and a bad value is named."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import needs_midi, tiny_config

from reexam_jax import errors, evaluate, experiments, models, train
from reexam_jax import state as state_lib

DOT = re.compile(r'stablehlo\.dot_general[^\n]*')


def _setup(model_name, **overrides):
  arg = dict(d_rnn=16, d_emb=16, d_lat=8, d_data=6, batch_size=2, tgt_len=5)
  arg.update(overrides)
  config = experiments.get_config('nottingham', model_name,
                                  ','.join(f'{k}={v}' for k, v in arg.items()))
  model = models.build_model(config.model, precision=config.matmul_precision)
  params = models.init_params(model, jax.random.key(0), config.model.d_data)
  x = (np.random.default_rng(0).random((6, 2, 6)) < 0.3).astype(np.float32)
  return config, model, params, x


def _train_step_dots(model_name, precision):
  config, model, params, x = _setup(model_name, matmul_precision=repr(precision))
  optimizer = state_lib.make_optimizer(config)
  state = state_lib.initial_state(params, optimizer)
  step = train.make_train_step(model, optimizer, config)
  return DOT.findall(step.lower(state, x[:-1], x[1:], jax.random.key(1)).as_text())


@pytest.mark.parametrize('model_name', ['f_rnn', 'srnn_hier', 'rnn_flat'])
def test_precision_reaches_every_training_matmul(model_name):
  dots = _train_step_dots(model_name, 'BF16_BF16_F32')
  assert len(dots) >= 6  # forward and backward matmuls of the LSTMs and heads
  bf16 = 'lhs_precision_type = bf16, rhs_precision_type = bf16, accumulation_type = f32'
  assert all(bf16 in d for d in dots), [d for d in dots if bf16 not in d][:2]
  assert not any(bf16 in d for d in _train_step_dots(model_name, 'default'))


@needs_midi
def test_training_validates_with_true_float32(tmp_path, monkeypatch):
  """A run trained in bfloat16 scores validation and test sets with a model whose
  matmuls are true float32."""
  class Stop(Exception):
    pass

  seen = {}
  make_train_step = train.make_train_step

  def record_training_model(model, optimizer, config):
    seen['train'] = model.core.precision
    return make_train_step(model, optimizer, config)

  def lower_evaluation(config, model, data, mesh):
    del data
    d = config.model.d_data
    params = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0), d))
    xy = jax.ShapeDtypeStruct((5, 2, d), jnp.float32)
    mask = jax.ShapeDtypeStruct((5, 2), jnp.float32)
    score = evaluate.make_chunk_scorer(model, 2, 'posterior', mesh)
    raise Stop(DOT.findall(score.lower(params, xy, xy, mask, jax.random.key(0)).as_text()))

  monkeypatch.setattr(train, 'make_train_step', record_training_model)
  monkeypatch.setattr(evaluate, 'make_evaluator', lower_evaluation)
  config = tiny_config('f_srnn', matmul_precision="'BF16_BF16_F32'")
  with pytest.raises(Stop) as stop:
    train.train_and_evaluate(config, str(tmp_path))
  assert seen['train'] == 'BF16_BF16_F32'
  dots = stop.value.args[0]
  assert dots and all('precision = [HIGHEST, HIGHEST]' in d for d in dots)


@pytest.mark.parametrize('value', ['bf16', 'bfloat16', 'float32'])
def test_unknown_precision_is_named(value):
  config = experiments.get_config('nottingham', 'f_rnn', f'matmul_precision={value!r}')
  with pytest.raises(errors.UserError, match=f"--config.matmul_precision='{value}'"):
    models.build_model(config.model, precision=config.matmul_precision)


def _loss_and_grads(model_name, precision):
  _, model, params, x = _setup(model_name, d_rnn=64, d_emb=64,
                               matmul_precision=repr(precision))

  def loss(p):
    out = model.apply({'params': p}, x[:-1], x[1:], deterministic=True,
                      rngs={'latent': jax.random.key(1)})
    return -out['log_prob'].sum() + out['kl'].sum()

  return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize('model_name', ['f_rnn', 'srnn_hier'])
def test_bf16_operands_close_to_float32(model_name):
  """bfloat16 operands (8-bit mantissa) move the loss and gradients by about 2^-8
  relative (2e-3 for the gradients here): enough to show the casts took effect, small
  enough to train with."""
  (loss32, grads32), (loss16, grads16) = (_loss_and_grads(model_name, p)
                                          for p in ('highest', 'BF16_BF16_F32'))
  assert loss16 != loss32
  assert float(loss16) == pytest.approx(float(loss32), rel=1e-3)
  flat32, flat16 = (np.concatenate([np.ravel(g) for g in jax.tree.leaves(t)])
                    for t in (grads32, grads16))
  assert 0 < np.linalg.norm(flat16 - flat32) < 1e-2 * np.linalg.norm(flat32)  # ~2e-3 seen


def test_bf16_precision_casts_operands():
  dots = _train_step_dots('f_rnn', 'BF16_BF16_F32')
  operand_types = lambda d: re.search(r': \((tensor<[^>]*>), (tensor<[^>]*>)\)', d).groups()
  both = [d for d in dots if all('bf16>' in t for t in operand_types(d))]
  # Autodiff's transposes of explicit bf16 dots (embedding, heads) meet a float32
  # cotangent; every dot of our own LSTM backward and every forward dot is bf16 x bf16.
  assert all(any('bf16>' in t for t in operand_types(d)) for d in dots)
  assert len(both) >= 6, len(both)
  assert not any('bf16>' in d for d in _train_step_dots('f_rnn', 'default'))
