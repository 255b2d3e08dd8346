"""Every model of the registry on tiny configurations: autoregressive causality of the
per-element conditional densities, normalisation of every output model with both heads
(all binary outcomes of a step enumerated; every Gaussian-mixture conditional integrated
on a grid), and the delta-RNN splits (spec §2.7-2.8).

Shapes are tiny (T = 4 steps, widths 8) and each model is compiled once: the sequences
to compare (perturbations, outcomes, grid points) are a vmapped leading axis of fixed
width WIDTH, scored chunk by chunk by one jitted function.
"""
import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from reexam_jax import errors
from reexam_jax import experiments
from reexam_jax import layers
from reexam_jax import models
from reexam_jax.models import outputs

T = 4                     # steps per test sequence
B = 2                     # batch columns: two histories (column 1 is never perturbed)
WIDTH = 1024              # sequences scored per call (the vmapped axis)
KEY = jax.random.key(7)   # the 'latent' stream: identical in every call that is compared
# Entries that do not depend on a perturbed element are bit-identical (same compiled
# function, same position in the batch, and no arithmetic path from the element), so
# any change at all where the model's order forbids dependence is a leak.
UNCHANGED_TOL = 0.0
# |change| required where the model must depend on the element: real dependence through
# a few saturating LSTM steps can be as weak as ~1e-5.
CHANGED_TOL = 1e-6
# |log total probability of a step| allowed: float32 probabilities summed (enumeration)
# or integrated on `_grid`, whose trapezoid error is below 1e-6 here (see its docstring).
LOG_MASS_TOL = 1e-5

# case id -> (registry name, head, overrides of the tiny config). GMM cases use D = 6,
# Bernoulli cases D = 3 (so that all 2^3 outcomes of a step can be enumerated), flat D = 1.
CASES = {
    'f_rnn': ('f_rnn', 'gmm', {}),
    'rnn_flat': ('rnn_flat', 'gmm', {}),
    'f_srnn': ('f_srnn', 'gmm', {}),
    'srnn_flat': ('srnn_flat', 'gmm', {}),
    'rnn_hier': ('rnn_hier', 'gmm', {}),
    'srnn_hier': ('srnn_hier', 'gmm', {}),
    'rnn_hier_made': ('rnn_hier_made', 'gmm', {}),
    'srnn_hier_made': ('srnn_hier_made', 'gmm', {}),
    'delta_rnn_interleave': ('delta_rnn_interleave', 'gmm', dict(chk_len=2)),
    'delta_rnn_random': ('delta_rnn_random', 'gmm', dict(d_leak=2)),
    'zf_f_srnn': ('zf_f_srnn', 'gmm', {}),
    'zf_srnn_flat': ('zf_srnn_flat', 'gmm', {}),
    'rnn_hier_made_joint_ln': ('rnn_hier_made', 'gmm', dict(joint_layernorm=True)),
    # Bernoulli (MIDI-style: single-linear SRNN prior/posterior, shared hier head).
    'f_rnn_bern': ('f_rnn', 'bernoulli', {}),
    'rnn_flat_bern': ('rnn_flat', 'bernoulli', {}),
    'f_srnn_bern': ('f_srnn', 'bernoulli', {}),
    'srnn_flat_bern': ('srnn_flat', 'bernoulli', {}),
    'rnn_hier_bern': ('rnn_hier', 'bernoulli', {}),
    'srnn_hier_bern': ('srnn_hier', 'bernoulli', {}),
    'rnn_hier_made_bern': ('rnn_hier_made', 'bernoulli', {}),
    'rnn_hier_made_joint_ln_bern': ('rnn_hier_made', 'bernoulli', dict(joint_layernorm=True)),
    'delta_rnn_interleave_bern': ('delta_rnn_interleave', 'bernoulli', dict(chk_len=2)),
    'delta_rnn_random_bern': ('delta_rnn_random', 'bernoulli', dict(d_leak=1)),
    'zf_f_srnn_bern': ('zf_f_srnn', 'bernoulli', dict(d_mlp=8)),  # MLP nets always
}
DENSITIES = [c for c in CASES if 'joint_ln' not in c]  # valid densities (not the quirk)
HEADS = (layers.GMMHead, layers.BernoulliHead)


def _tiny_config(name, head, overrides):
  d_data = 1 if name.endswith('_flat') else (6 if head == 'gmm' else 3)
  latent = models.is_latent(name)
  cfg = dict(name=name, d_data=d_data, d_rnn=8, d_emb=8, d_mlp=8 if head == 'gmm' else 0,
             d_lat=4, n_mix=3, n_layer=1 if latent else 2, n_low_layer=2, d_nade=4,
             dropout=0.0, head=head, chk_len=2, d_leak=2, split_seed=3)
  cfg.update(overrides)
  return experiments.model_config(**cfg)


def _random_params(shapes, seed, scale=0.5):
  """N(0, scale^2) for every parameter (so zero biases and orthogonal matrices hide
  nothing), built from eval_shape: no compilation of `init`. LayerNorm gains stay near 1
  and its offsets near 0, so that no ReLU block is dead for every input."""
  rng = np.random.default_rng(seed)

  def draw(path, s):
    noise = rng.standard_normal(s.shape)
    keys = [getattr(p, 'key', '') for p in path]
    if any('norm' in k for k in keys[:-1]):
      noise = (1.0 if keys[-1] == 'scale' else 0.0) + 0.1 * noise
    else:
      noise = scale * noise
    return jnp.asarray(noise, s.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


class _AtZero(NamedTuple):
  """A head's distribution whose density is read at 0 instead of at y when at_zero."""
  dist: Any
  at_zero: jax.Array

  def log_prob(self, y):
    return self.dist.log_prob(jnp.where(self.at_zero, jnp.zeros_like(y), y))


def _log_prob(model, params, x, y, key, at_zero, latent_source):
  """log_prob [T, B, D] of y given x. With `at_zero` every output head reads its density
  at 0 instead of at y: the result then depends on y only through the conditional
  distributions, so a change caused by y[t, i] is a conditional that reads y[t, i]
  (its own one included), never the point where a density is evaluated."""

  def read_at_zero(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, HEADS) and context.method_name == '__call__':
      return _AtZero(out, at_zero)
    return out

  with nn.intercept_methods(read_at_zero):
    return model.apply({'params': params}, x, y, deterministic=True,
                       latent_source=latent_source, rngs={'latent': key})['log_prob']


class Setup:
  """A tiny model of one case, its parameters, and its jitted scorer (compiled lazily)."""

  def __init__(self, case):
    name, head, overrides = CASES[case]
    self.name, self.head = name, head
    self.cfg = _tiny_config(name, head, overrides)
    self.d = self.cfg.d_data
    self.family = experiments.MODELS[name].output
    self.model = models.build_model(self.cfg)
    shapes = jax.eval_shape(
        lambda: models.init_params(self.model, jax.random.key(0), self.d))
    self.params = _random_params(shapes, seed=sorted(CASES).index(case))
    self.leak = tuple(getattr(self.model.output, 'leak', ()))
    self.rest = tuple(getattr(self.model.output, 'rest', ()))
    self._scorers = {}

  def score(self, s, at_zero=False, latent_source='prior'):
    """log_prob [N, T, B, D] (float64) of N sequences s [N, T+1, B, D] (x = s[:, :-1],
    y = s[:, 1:]), WIDTH at a time. Every sequence draws the same latent noise (one key,
    not vmapped), so with z from the prior, which reads x only, sequences that share a
    past share z: a latent model is then scored given one z per column and step."""
    if latent_source not in self._scorers:
      fn = functools.partial(_log_prob, self.model, latent_source=latent_source)
      self._scorers[latent_source] = jax.jit(jax.vmap(fn, in_axes=(None, 0, 0, None, None)))
    scorer = self._scorers[latent_source]
    out = []
    for start in range(0, len(s), WIDTH):
      chunk = np.zeros((WIDTH,) + s.shape[1:], np.float32)
      n = len(s[start:start + WIDTH])
      chunk[:n] = s[start:start + WIDTH]
      lp = scorer(self.params, chunk[:, :-1], chunk[:, 1:], KEY, jnp.asarray(at_zero))
      out.append(np.asarray(lp, np.float64)[:n])
    return np.concatenate(out)

  def sequences(self, seed):
    """A random underlying sequence S [T+1, B, D]: x = S[:-1], y = S[1:]."""
    rng = np.random.default_rng(seed)
    shape = (T + 1, B, self.d)
    if self.head == 'bernoulli':
      return rng.integers(0, 2, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)

  def perturb(self, s, t, i):
    """A copy of S with element i of step t+1 of column 0 changed: y[t, i], x[t+1, i]."""
    s = s.copy()
    s[t + 1, 0, i] = 1.0 - s[t + 1, 0, i] if self.head == 'bernoulli' else (
        s[t + 1, 0, i] + 1.5)
    return s

  def conditioned_on(self, i):
    """[D] bool: the elements of a step whose conditional reads element i, i.e. those
    after i in the model's order (never i itself)."""
    out = np.zeros(self.d, bool)
    if self.family in ('hier_lstm', 'hier_made'):
      out[i + 1:] = True              # the elements after i in the step
    elif self.family == 'delta' and i in self.leak:
      out[list(self.rest)] = True     # the rest is conditioned on the leaked subset
    return out

  def may_depend(self, t, i):
    """[T, D] bool: which conditionals may read element (t, i) of y."""
    may = np.zeros((T, self.d), bool)
    may[t + 1:] = True                # x[t+1] = y[t]: every later step
    may[t] = self.conditioned_on(i)
    return may


@functools.lru_cache(maxsize=None)
def _setup(case):
  return Setup(case)


def _perturbation_diffs(m, seed, latent_source='prior'):
  """|change| of every conditional (read at 0) when one element of y changes, for every
  element at once: (positions, diff [P, T, D]); sequence k perturbs positions[k] of
  column 0. The unperturbed sequence is scored at the same batch positions."""
  positions = [(t, i) for t in range(T) for i in range(m.d)]
  base = m.sequences(seed)
  perturbed = np.stack([m.perturb(base, t, i) for t, i in positions])
  lp0 = m.score(np.broadcast_to(base, perturbed.shape), True, latent_source)
  lp1 = m.score(perturbed, True, latent_source)
  assert np.all(np.isfinite(lp0)) and np.all(np.isfinite(lp1))
  diff = np.abs(lp1 - lp0)  # [P, T, B, D]
  assert np.all(diff[:, :, 1] == 0.0)  # column 1 is never perturbed: columns do not mix
  return positions, diff[:, :, 0]


def _causality_violations(m, positions, diff):
  bad = []
  for k, (t, i) in enumerate(positions):
    leaked = ~m.may_depend(t, i) & (diff[k] > UNCHANGED_TOL)
    for t2, j in zip(*np.nonzero(leaked)):
      bad.append(f'y[{t},{i}] -> log_prob[{t2},{j}] (|change| {diff[k, t2, j]:.2e})')
  return bad


@pytest.mark.parametrize('case', DENSITIES)
def test_causality(case):
  """The conditional of an element reads only elements strictly before it in the model's
  order (element stream for flat models, the split for the delta-RNN; z drawn from the
  prior with a fixed key): never itself, never later elements of its step, never later
  steps. And it does read the elements the order puts before it, and every step reads
  all earlier steps."""
  m = _setup(case)
  positions, diff = _perturbation_diffs(m, seed=11)
  assert _causality_violations(m, positions, diff) == []

  missing = []
  for k, (t, i) in enumerate(positions):
    for j in np.nonzero(m.conditioned_on(i))[0]:
      if diff[k, t, j] <= CHANGED_TOL:
        missing.append(f'y[{t},{i}] -/-> log_prob[{t},{j}]')
    for t2 in range(t + 1, T):  # x[t+1] carries y[t] into every later step
      if diff[k, t2].max() <= CHANGED_TOL:
        missing.append(f'y[{t},{i}] -/-> step {t2}')
  assert missing == []


@pytest.mark.parametrize('case', ['f_srnn', 'zf_f_srnn'])
def test_posterior_latent_sees_future_targets(case):
  """With z from the posterior (it reads y[t:] through the backward LSTM), the check
  above flags dependence on later targets: the causality test can fail."""
  m = _setup(case)
  positions, diff = _perturbation_diffs(m, seed=12, latent_source='posterior')
  for k, (t, i) in enumerate(positions):
    if t > 0:
      assert diff[k, :t].max() > CHANGED_TOL, (t, i)  # earlier steps see y[t]
  assert _causality_violations(m, positions, diff) != []


@pytest.mark.parametrize('case', ['rnn_hier_made_joint_ln', 'rnn_hier_made_joint_ln_bern'])
def test_joint_layernorm_leaks_within_step(case):
  """The reference's LayerNorm over the joint [D, d_nade] block (spec §2.5, §11.8): every
  block is normalised with statistics of all blocks, and the blocks u > i read y_i, so
  y[t, i] changes the conditional of every j <= i, its own included. y[t, D-1] is read
  by no block, so it leaks nowhere; the default (per-block LayerNorm) is causal
  (test_causality)."""
  m = _setup(case)
  positions, diff = _perturbation_diffs(m, seed=13)
  for k, (t, i) in enumerate(positions):
    if i <= m.d - 2:
      assert np.all(diff[k, t, :i + 1] > CHANGED_TOL), (t, i, diff[k, t])
    else:
      assert np.all(diff[k, t] <= UNCHANGED_TOL), (t, i, diff[k, t])
    assert diff[k, :t].max(initial=0.0) <= UNCHANGED_TOL  # still causal across steps
  assert _causality_violations(m, positions, diff) != []


# ----------------------------------------------------------------------------------------
# Normalisation: the last step of a fixed history, for each of the B history columns.
# A step's joint density is the product of its elements' conditionals in the model's
# order; it integrates to one when every conditional integrates to one (checked here,
# exactly for binary steps) and reads only the elements before it (test_causality).
# Latent models are checked given z: every outcome shares the history, hence z.
# ----------------------------------------------------------------------------------------
def _grid():
  """4999 points for the trapezoid rule: step 0.01 in [-15, 15], geometric tails to
  +-1e4. The tiny models' mixture components have standard deviations in [0.03, 11] and
  means in [-3.5, 3.5]; on them the grid's error is below 4e-7 (a 4x finer grid agrees)."""
  tail = np.geomspace(15.0, 1e4, 1000)[1:]
  return np.concatenate([-tail[::-1], np.linspace(-15.0, 15.0, 3001), tail])


def _all_binary(d):
  return np.array([[(c >> j) & 1 for j in range(d)] for c in range(2 ** d)], np.float32)


def _log_mass(m, seed):
  """log of the total probability of the last step given its history, [..., B].

  Bernoulli: all 2^D outcomes of the step enumerated, the joint summed ([B]).
  GMM: element i's conditional integrated over `_grid` in y[T-1, i], the step's other
  elements held at their random values ([D, B]).
  """
  history = m.sequences(seed)  # [T+1, B, D]; its last step is replaced
  if m.head == 'bernoulli':
    outcomes = _all_binary(m.d)  # [2^D, D]
    s = np.repeat(history[None], len(outcomes), axis=0)
    s[:, T] = outcomes[:, None, :]
    return special.logsumexp(m.score(s)[:, T - 1].sum(-1), axis=0)
  grid = _grid()
  g, d = len(grid), m.d
  s = np.repeat(history[None], d * g, axis=0)  # [D*G, T+1, B, D]
  for i in range(d):
    s[i * g:(i + 1) * g, T, :, i] = grid[:, None]
  lp = m.score(s)[:, T - 1].reshape(d, g, B, d)
  own = lp[np.arange(d), :, :, np.arange(d)]  # [D, G, B]: element i's conditional
  return np.log(np.trapezoid(np.exp(own), grid, axis=1))


@pytest.mark.parametrize('case', DENSITIES)
def test_step_is_normalised(case):
  m = _setup(case)
  np.testing.assert_allclose(_log_mass(m, seed=21), 0.0, atol=LOG_MASS_TOL)


@pytest.mark.parametrize('case', ['rnn_hier_made_joint_ln', 'rnn_hier_made_joint_ln_bern'])
def test_joint_layernorm_is_not_normalised(case):
  """The reference's joint LayerNorm: conditionals that read their own element do not
  integrate to one, and the 2^D outcomes of a binary step do not sum to one."""
  assert np.abs(_log_mass(_setup(case), seed=21)).max() > 1e-3


# ----------------------------------------------------------------------------------------
# delta-RNN splits.
# ----------------------------------------------------------------------------------------
def _reference_interleave(d, s):
  """Spec §2.7 literally: leak i*s for i < ceil(D/s); rest the slices [i*s+1, (i+1)*s)."""
  n_leak = math.ceil(d / s)
  leak = [i * s for i in range(n_leak)]
  rest = [j for i in range(n_leak) for j in range(i * s + 1, min((i + 1) * s, d))]
  return leak, rest


@pytest.mark.parametrize('chk_len,n_leak', [(2, 100), (3, 67), (4, 50), (10, 20), (7, 29)])
def test_interleave_split(chk_len, n_leak):
  leak, rest = outputs.delta_split(200, 'interleave', chk_len=chk_len)
  want_leak, want_rest = _reference_interleave(200, chk_len)
  assert len(leak) == n_leak and len(rest) == 200 - n_leak
  assert list(leak) == want_leak
  assert list(rest) == want_rest


def test_interleave_split_of_the_config():
  cfg = experiments.get_config('timit', 'delta_rnn_interleave').model
  out = models.build_model(cfg).output
  want_leak, want_rest = _reference_interleave(200, 3)
  assert (list(out.leak), list(out.rest)) == (want_leak, want_rest)
  assert (len(out.leak), len(out.rest)) == (67, 133)


def test_random_split_is_a_fixed_permutation():
  leak, rest = outputs.delta_split(200, 'random', d_leak=75, seed=0)
  again = outputs.delta_split(200, 'random', d_leak=75, seed=0)
  other = outputs.delta_split(200, 'random', d_leak=75, seed=1)
  assert len(leak) == 75 and len(rest) == 125
  assert sorted(np.concatenate([leak, rest]).tolist()) == list(range(200))
  np.testing.assert_array_equal(leak, again[0])
  np.testing.assert_array_equal(rest, again[1])
  assert not np.array_equal(leak, other[0])
  # The rest stays in permutation order (spec §2.8), not sorted.
  assert list(rest) != sorted(rest)
  # Reproducible across numpy releases: the legacy RandomState stream is frozen.
  np.testing.assert_array_equal(
      np.concatenate([leak, rest]), np.random.RandomState(0).permutation(200))
  # A different V only moves the boundary of the same permutation.
  leak20, rest20 = outputs.delta_split(200, 'random', d_leak=20, seed=0)
  np.testing.assert_array_equal(leak20, leak[:20])


def test_random_split_of_the_config_is_drawn_from_the_run_seed():
  """split_seed=-1 (the default): the split is the run seed's permutation, so seeds
  differ in their splits; an explicit split_seed fixes it whatever the run seed."""
  for dataset, d, v in (('timit', 200, 75), ('muse', 88, 11)):
    cfg = experiments.get_config(dataset, 'delta_rnn_random').model
    assert cfg.split_seed == -1
    for seed in (0, 1234):
      out = models.build_model(cfg, seed).output
      leak, rest = outputs.delta_split(d, 'random', d_leak=v, seed=seed)
      assert (list(out.leak), list(out.rest)) == (leak.tolist(), rest.tolist())
      assert models.leaked_elements(models.build_model(cfg, seed)) == leak.tolist()
    assert list(models.build_model(cfg, 1).output.leak) != list(
        models.build_model(cfg, 2).output.leak)
    fixed = experiments.get_config(dataset, 'delta_rnn_random', 'split_seed=3').model
    leak3, _ = outputs.delta_split(d, 'random', d_leak=v, seed=3)
    for seed in (1, 2):
      assert list(models.build_model(fixed, seed).output.leak) == leak3.tolist()


def test_bad_split_seed_is_named():
  cfg = experiments.get_config('muse', 'delta_rnn_random', 'split_seed=-2').model
  with pytest.raises(errors.UserError, match=r'config\.model\.split_seed=-2'):
    models.build_model(cfg, 0)


def test_only_delta_models_leak_elements():
  cfg = experiments.get_config('timit', 'delta_rnn_interleave').model
  assert models.leaked_elements(models.build_model(cfg)) == list(range(0, 200, 3))
  assert models.leaked_elements(
      models.build_model(experiments.get_config('muse', 'f_rnn').model)) is None


def test_unknown_split_is_rejected():
  with pytest.raises(ValueError):
    outputs.delta_split(10, 'blocks')
