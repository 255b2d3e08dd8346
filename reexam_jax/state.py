"""The train state, the optimiser that updates it, and the best-on-valid parameters of a
finished or interrupted run (what sampling and test scoring read, with no optimiser)."""
from typing import Any, Dict, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import optax

from reexam_jax import checkpointing
from reexam_jax import errors
from reexam_jax import models
from reexam_jax import workdir as workdir_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # number of optimiser steps taken
  params: Any
  opt_state: Any


def run_keys(seed: int) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """(init, train, eval) keys of a run: parameters, training noise, evaluation noise."""
  init_rng, train_rng, eval_rng = jax.random.split(jax.random.key(seed), 3)
  return init_rng, train_rng, eval_rng


def learning_rate_schedule(config) -> optax.Schedule:
  """Cosine decay from learning_rate to end_learning_rate over num_steps, no warm-up."""
  return optax.cosine_decay_schedule(
      config.learning_rate, config.num_steps,
      alpha=config.end_learning_rate / config.learning_rate)


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam after global-norm clipping (docs/reference.md, "Training schedule")."""
  return optax.chain(optax.clip_by_global_norm(config.grad_clip),
                     optax.adam(learning_rate_schedule(config)))


def initial_state(params, optimizer: optax.GradientTransformation) -> TrainState:
  """Step 0: params and the optimiser's fresh state for them."""
  return TrainState(jnp.int32(0), params, optimizer.init(params))


def restore_best(config, workdir: str, sharding: Optional[jax.sharding.Sharding] = None
                 ) -> Tuple[Any, Any, Dict[str, Any]]:
  """(model, best-on-valid parameters, checkpoint record) of workdir's latest
  checkpoint, restoring nothing else (no train state, no optimiser); UserError when
  there is none or workdir's config.json is another config. sharding: where the
  parameters go (e.g. replicated over a multi-process mesh; default: one device)."""
  workdir_lib.check_has_checkpoints(workdir)
  workdir_lib.check_config(config, workdir)
  model = models.build_model(config.model, config.seed, precision='highest')
  shapes = jax.eval_shape(lambda: models.init_params(model, jax.random.key(0),
                                                      config.model.d_data))
  if sharding is not None:
    shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                          shapes)
  ckpt = checkpointing.Checkpointer(workdir)
  try:
    if ckpt.latest_step() is None:
      raise errors.UserError(f'--workdir={workdir}: no checkpoint (train first)')
    params, record = ckpt.restore_best_params(shapes)
  finally:
    ckpt.close()
  return model, params, record
