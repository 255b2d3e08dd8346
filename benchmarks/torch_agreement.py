"""Our MIDI F-RNN, F-SRNN and delta-RNN (random split) against the PyTorch yardstick at
initialisation: the same parameters, batch and latent noise, dropout off; prints both
training losses and, per parameter, how far our gradient is from the yardstick's.

  python benchmarks/torch_agreement.py [--models f_rnn f_srnn delta_rnn_random]
      [--batch 16] [--tgt_len 100] [--seed 0]

For each model, configs/nottingham_<model>.py and the yardstick's preset of the same
cell (shared/bench/torch_reference.py, built by its own make_config/build_model, as
benchmarks/harness.py picks it) are set to dropout 0. Our initial parameters
(models.init_params) are copied into the yardstick's model, and for the delta-RNN our
split as well: its leak_idx/rest_idx buffers (its own torch.randperm draw) are set to
our leaked and rest elements, in our order (the order of the crit_rest rows), so both
score the same split. One Bernoulli(0.1) batch [T, B, 88] goes through our train.make_loss_fn and the yardstick's train_step at its
first step (KL weight 0.2). The F-SRNN's one posterior draw z = mu + sigma * eps uses
the same standard-normal eps [T, B, Z] on both sides: each forward's single normal draw
(jax.random.normal, torch.randn_like) is replaced by it. Gradients are compared after
global-norm clipping to grad_clip (the yardstick's train_step clips before its
optimiser step, where they are read), as

  rel = max |g_ours - g_torch| / max |g_torch|   per parameter tensor.

The KL-weight and learning-rate schedules are compared through the yardstick's own
train_step (a stand-in model whose loss is the KL weight) at a few steps.
"""
import argparse
import contextlib
import importlib.util
import math
import os
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import step_time
from reexam_jax import models
from reexam_jax import state as state_lib
from reexam_jax import train

FLOAT32_TOLERANCE = 1e-4  # relative; float32 sums over ~1e5 terms in either order
MODELS = ('f_rnn', 'f_srnn', 'delta_rnn_random')  # configs/nottingham_<model>.py
SCHEDULE_STEPS = (1, 2, 1000, 8001, 10000, 20000)  # the yardstick's 1-based steps


def load_yardstick():
  spec = importlib.util.spec_from_file_location('torch_reference', step_time.TORCH_REFERENCE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def our_path(torch_name: str) -> tuple:
  """A yardstick parameter name -> the path of the same tensor in our parameters (same
  shapes: our layers store PyTorch's layouts).

  'inp_emb.0.weight', 'core.prior.1.bias' (a Linear in an nn.Sequential),
  'rnn.weight_ih_l0' (nn.LSTM layer 0), 'crit.weight' (the Bernoulli head; the
  delta-RNN's are 'crit_leak' and 'crit_rest'), 'rest_hid.3.weight' (the delta-RNN's
  Sequential of Linear, LayerNorm, ReLU, Linear, LayerNorm, ReLU: our rest_dense_i and
  rest_norm_i).
  """
  parts = torch_name.split('.')
  if parts[0] == 'core':  # the F-SRNN's trunk; our cores hold the same modules
    parts = parts[1:]
  dense = {'weight': 'kernel', 'bias': 'bias'}
  if parts[0].startswith('crit'):
    return ('output', parts[0], dense[parts[1]])
  if parts[0] == 'rest_hid':
    block, pos = divmod(int(parts[1]), 3)  # pos 0: Linear, 1: LayerNorm (2: ReLU)
    if pos == 0:
      return ('output', f'rest_dense_{block}', dense[parts[2]])
    return ('output', f'rest_norm_{block}', {'weight': 'scale', 'bias': 'bias'}[parts[2]])
  if len(parts) == 2:  # nn.LSTM: weight_ih_l0 -> layer_0/w_ih
    kind, which, layer = parts[1].split('_')
    return ('core', parts[0], f'layer_{layer[1:]}', f'{kind[0]}_{which}')
  return ('core', parts[0], 'TorchDense_0', dense[parts[2]])


def our_split(model):
  """(leaked, rest) element indices of our delta-RNN, in its order; None otherwise."""
  leak = models.leaked_elements(model)
  return None if leak is None else (leak, list(model.output.rest))


def flat(tree) -> dict:
  """A parameter tree -> {path tuple: array}."""
  return {tuple(k.key for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def copy_into(torch_model, model, params) -> None:
  """Our parameters -> the yardstick's model, every tensor on both sides used once; and
  our delta-RNN split -> its leak_idx/rest_idx buffers."""
  flat_params = flat(params)
  used = set()
  with torch.no_grad():
    for name, p in torch_model.named_parameters():
      path = our_path(name)
      value = np.array(flat_params[path])  # a writable copy for torch
      if value.shape != tuple(p.shape):
        raise ValueError(f'{name} {tuple(p.shape)} vs ours {"/".join(path)} {value.shape}')
      p.copy_(torch.from_numpy(value))
      used.add(path)
  if used != set(flat_params):
    raise ValueError(f'ours without a yardstick tensor: {sorted(set(flat_params) - used)}')
  split = our_split(model)
  if (split is None) == hasattr(torch_model, 'leak_idx'):
    raise ValueError('a delta-RNN split on one side only')
  for buffer, idx in zip(('leak_idx', 'rest_idx'), split or ()):
    theirs = getattr(torch_model, buffer)
    if len(idx) != len(theirs):
      raise ValueError(f'{buffer}: {len(theirs)} elements vs ours {len(idx)}')
    theirs.copy_(torch.tensor(idx))


class GradRecorder:
  """Stands in for the yardstick's optimiser: keeps the (clipped) gradients its
  train_step hands to opt.step(), and the learning rate it sets afterwards."""

  def __init__(self, model):
    self.model, self.grads, self.param_groups = model, None, [{}]

  def zero_grad(self, set_to_none=True):
    self.model.zero_grad(set_to_none=set_to_none)

  def step(self):
    self.grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters()}


@contextlib.contextmanager
def shared_noise(eps: np.ndarray):
  """Every standard-normal draw of either framework's forward returns `eps`; yields the
  list of draws made (shapes), to check that each forward made the expected ones."""
  draws = []

  def jax_normal(key, shape, dtype=jnp.float32):
    del key
    draws.append(('jax', tuple(shape)))
    return jnp.asarray(eps, dtype).reshape(shape)

  def torch_randn_like(t):
    draws.append(('torch', tuple(t.shape)))
    return torch.from_numpy(eps).reshape(t.shape)

  with mock.patch.object(jax.random, 'normal', jax_normal), \
       mock.patch.object(torch, 'randn_like', torch_randn_like):
    yield draws


def compare(model_name: str, batch: int, tgt_len: int, seed: int, ref) -> bool:
  """Prints losses and per-parameter gradient differences; True when within tolerance."""
  config = step_time.load_config(
      os.path.join(step_time.REPO, 'configs', f'nottingham_{model_name}.py'))
  config.unlock()
  config.model.dropout = 0.0
  preset = step_time.default_preset(config)
  cfg = ref.make_config(preset)
  cfg.dropout = 0.0

  model = models.build_model(config.model, config.seed)
  d, z = config.model.d_data, config.model.d_lat
  params = models.init_params(model, jax.random.key(config.seed), d)
  torch_model = ref.build_model(cfg)
  copy_into(torch_model, model, params)
  torch_model.train()  # training mode, as its train_step; dropout is 0 everywhere

  torch.manual_seed(seed)
  x, y = ref.random_batch(cfg, tgt_len, batch, torch.device('cpu'))  # [T, B, D] each
  eps = np.random.default_rng(seed).standard_normal((tgt_len, batch, z)).astype(np.float32)

  loss_fn = train.make_loss_fn(model, config)
  clip = optax.clip_by_global_norm(config.grad_clip)
  with shared_noise(eps) as draws:
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, jnp.asarray(x.numpy()), jnp.asarray(y.numpy()), train.kl_weight(config, 0),
        jax.random.key(seed))
    grads, _ = clip.update(grads, clip.init(params))
    recorder = GradRecorder(torch_model)
    torch_loss = float(ref.train_step(torch_model, recorder, cfg, x, y, step=1))
  latent = models.is_latent(config.model.name)
  want_draws = [('jax', (tgt_len, batch, z)), ('torch', (tgt_len, batch, z))] if latent else []
  if draws != want_draws:
    raise RuntimeError(f'normal draws {draws}, expected {want_draws}')

  split = our_split(model)
  print(f'\n{model_name} (yardstick preset {preset}; batch {batch}, tgt_len {tgt_len}, '
        f'D {d}; dropout 0; {"shared eps [T, B, Z]" if latent else "no latent noise"}; '
        f'{models.count_params(model, params):,} parameters'
        + (f'; our split, leaked {split[0]}' if split else '') + ')')
  loss_rel = abs(float(loss) - torch_loss) / abs(torch_loss)
  print(f'loss: ours {float(loss):.6f}, torch {torch_loss:.6f}, rel diff {loss_rel:.2e}')
  print(f'{"parameter (torch name)":<26} {"shape":>12} {"max|g_torch|":>12} {"rel":>9}')
  worst, our_grads = {}, flat(grads)
  for name, g_torch in recorder.grads.items():
    g_ours, g_torch = np.asarray(our_grads[our_path(name)]), g_torch.numpy()
    scale = np.abs(g_torch).max()
    rel = np.abs(g_ours - g_torch).max() / scale if scale else np.abs(g_ours).max()
    print(f'{name:<26} {str(tuple(g_torch.shape)):>12} {scale:12.3e} {rel:9.2e}')
    group = name.split('.')[1] if name.startswith('core.') else name.split('.')[0]
    worst[group] = max(worst.get(group, 0.0), rel)
  print('max rel grad diff per group: '
        + ', '.join(f'{g} {r:.2e}' for g, r in worst.items()))
  ok = loss_rel < FLOAT32_TOLERANCE and max(worst.values()) < FLOAT32_TOLERANCE
  print(f'agreement within {FLOAT32_TOLERANCE:g}: {"yes" if ok else "NO"}')
  return ok


class KLWeightProbe(torch.nn.Module):
  """A stand-in model for the yardstick's train_step: nll 0 and KL 1 per (t, b), so its
  loss is the KL weight times the loss ratio."""

  def __init__(self):
    super().__init__()
    self.p = torch.nn.Parameter(torch.zeros(()))

  def forward(self, x, y):
    zeros = torch.zeros(y.shape[:2]) + 0 * self.p
    return zeros, zeros + 1


def compare_schedules(ref) -> bool:
  """KL weight used at, and learning rate set after, the yardstick's step n against
  train.kl_weight(step n - 1) and state.learning_rate_schedule(n) (our step counter
  counts steps taken before the update)."""
  config = step_time.load_config(os.path.join(step_time.REPO, 'configs',
                                              'nottingham_f_srnn.py'))
  cfg = ref.make_config(step_time.default_preset(config))
  probe = KLWeightProbe()
  recorder = GradRecorder(probe)
  x, y = ref.random_batch(cfg, 2, 1, torch.device('cpu'))
  schedule = state_lib.learning_rate_schedule(config)
  print(f'\nschedules (ours kl_increment {config.kl_increment:g} from {config.kl_init:g}, '
        f'cosine over {config.num_steps} steps; yardstick kld_incr {cfg.kld_incr:g}, '
        f'max_step {cfg.max_step})')
  ok = True
  for n in SCHEDULE_STEPS:
    torch_w = float(ref.train_step(probe, recorder, cfg, x, y, step=n)) / ref.loss_ratio(cfg)
    torch_lr = recorder.param_groups[0]['lr']
    ours_w, ours_lr = float(train.kl_weight(config, n - 1)), float(schedule(n))
    print(f'step {n:>5}: KL weight ours {ours_w:.6f} torch {torch_w:.6f}; next lr ours '
          f'{ours_lr:.4e} torch {torch_lr:.4e}')
    ok &= math.isclose(ours_w, torch_w, rel_tol=1e-5) and math.isclose(ours_lr, torch_lr,
                                                                        rel_tol=1e-4)
  print(f'schedules agree: {"yes" if ok else "NO"}')
  return ok


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--models', nargs='+', default=list(MODELS), choices=MODELS)
  ap.add_argument('--batch', type=int, default=16)
  ap.add_argument('--tgt_len', type=int, default=100)
  ap.add_argument('--seed', type=int, default=0, help='batch and eps')
  args = ap.parse_args()
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  ref = load_yardstick()
  print(f'jax {jax.__version__}, torch {torch.__version__}, float32 on CPU')
  ok = [compare(m, args.batch, args.tgt_len, args.seed, ref) for m in args.models]
  ok.append(compare_schedules(ref))
  sys.exit(0 if all(ok) else 1)


if __name__ == '__main__':
  main()
