"""Every model of the registry on tiny configurations: autoregressive causality of the
per-element log-densities, normalisation (brute-force enumeration of binary steps,
numerical integration of flat Gaussian mixtures), and the delta-RNN splits (spec §2.7-2.8).

Shapes are tiny (T = 4 steps, widths 8) and each model is compiled once: a batch column
per perturbed element, so one call scores every perturbation at once.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from reexam_jax import errors
from reexam_jax import experiments
from reexam_jax import models
from reexam_jax.models import outputs

T = 4                     # steps per test sequence
KEY = jax.random.key(7)   # the 'latent' stream: identical in every call that is compared
UNCHANGED_TOL = 1e-5      # |change| allowed where the model's order forbids dependence
# |change| required where the model must depend on the element. Entries that do not
# depend on it are bit-identical (same compiled function, same arithmetic), while real
# dependence through a few saturating LSTM steps can be as weak as ~1e-5.
CHANGED_TOL = 1e-6

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
    'rnn_hier_made_joint_ln': ('rnn_hier_made', 'gmm', dict(joint_layernorm=True)),
    # Bernoulli (MIDI-style: single-linear SRNN prior/posterior, shared hier head).
    'f_rnn_bern': ('f_rnn', 'bernoulli', {}),
    'rnn_hier_bern': ('rnn_hier', 'bernoulli', {}),
    'srnn_hier_bern': ('srnn_hier', 'bernoulli', {}),
    'rnn_hier_made_bern': ('rnn_hier_made', 'bernoulli', {}),
    'rnn_hier_made_joint_ln_bern': ('rnn_hier_made', 'bernoulli', dict(joint_layernorm=True)),
    'delta_rnn_interleave_bern': ('delta_rnn_interleave', 'bernoulli', dict(chk_len=2)),
    'delta_rnn_random_bern': ('delta_rnn_random', 'bernoulli', dict(d_leak=1)),
}
CAUSAL = [c for c in CASES if 'joint_ln' not in c]
FLAT_GRID_BATCH = 4096  # batch width of flat models (the density grid is scored in chunks)


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


def _log_prob(model, params, x, y, key, latent_source):
  return model.apply({'params': params}, x, y, deterministic=True,
                     latent_source=latent_source, rngs={'latent': key})['log_prob']


class Setup:
  """A tiny model of one case, its parameters, and jitted scorers (compiled lazily)."""

  def __init__(self, case):
    name, head, overrides = CASES[case]
    self.name, self.head = name, head
    self.cfg = _tiny_config(name, head, overrides)
    self.d = self.cfg.d_data
    self.family = models.MODELS[name][1]
    self.model = models.build_model(self.cfg)
    shapes = jax.eval_shape(
        lambda: models.init_params(self.model, jax.random.key(0), self.d))
    self.params = _random_params(shapes, seed=sorted(CASES).index(case))
    # Prior-sampled z depends on the past only: the generative model's order.
    self.score = jax.jit(functools.partial(_log_prob, self.model, latent_source='prior'))
    self.score_posterior = jax.jit(
        functools.partial(_log_prob, self.model, latent_source='posterior'))
    # One z (one key) shared by a leading axis of alternatives: latent normalisation.
    self.score_shared_z = jax.jit(jax.vmap(
        functools.partial(_log_prob, self.model, latent_source='prior'),
        in_axes=(None, 0, 0, None)))
    if self.d == 1:
      self.width = FLAT_GRID_BATCH
    else:
      self.width = max(T * self.d, 16)
    self.leak = tuple(getattr(self.model.output, 'leak', ()))
    self.rest = tuple(getattr(self.model.output, 'rest', ()))

  def sequences(self, seed, shape=None):
    """Random underlying sequences S [T+1, width, D]: x = S[:-1], y = S[1:]."""
    rng = np.random.default_rng(seed)
    shape = shape or (T + 1, self.width, self.d)
    if self.head == 'bernoulli':
      return rng.integers(0, 2, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)

  def perturb(self, s, t, col, i):
    """Changes element i of step t+1 of S, i.e. y[t, i] and x[t+1, i]."""
    s = s.copy()
    s[t + 1, col, i] = 1.0 - s[t + 1, col, i] if self.head == 'bernoulli' else (
        s[t + 1, col, i] + 1.5)
    return s

  def __call__(self, s, latent_source='prior'):
    fn = self.score if latent_source == 'prior' else self.score_posterior
    return np.asarray(fn(self.params, jnp.asarray(s[:-1]), jnp.asarray(s[1:]), KEY),
                      np.float64)

  def may_depend(self, t, i):
    """[T, D] bool: which log_prob entries may depend on element (t, i) of y."""
    may = np.zeros((T, self.d), bool)
    may[t + 1:] = True
    may[t, i] = True
    if self.family in ('hier_lstm', 'hier_made'):
      may[t, i + 1:] = True           # elements after i in the step's order
    elif self.family == 'delta' and i in self.leak:
      may[t, list(self.rest)] = True  # the rest is conditioned on the leaked subset
    return may

  def must_depend(self, t, i):
    """[T, D] bool: entries of step t that must depend on element (t, i)."""
    must = np.zeros((T, self.d), bool)
    must[t, i] = True
    if self.family in ('hier_lstm', 'hier_made'):
      must[t, i + 1:] = True
    elif self.family == 'delta' and i in self.leak:
      must[t, list(self.rest)] = True
    return must


@functools.lru_cache(maxsize=None)
def _setup(case):
  return Setup(case)


def _perturbation_diffs(m, seed, latent_source='prior'):
  """|log_prob(perturbed) - log_prob(base)| for every perturbation position at once.

  Returns (positions, diff [T, width, D], base log_prob); column k of the batch holds
  perturbation positions[k]; columns past len(positions) are not perturbed.
  """
  positions = [(t, i) for t in range(T) for i in range(m.d)]
  base = m.sequences(seed)
  pert = base
  for k, (t, i) in enumerate(positions):
    pert = m.perturb(pert, t, k, i)
  lp0, lp1 = m(base, latent_source), m(pert, latent_source)
  assert np.all(np.isfinite(lp0)) and np.all(np.isfinite(lp1))
  return positions, np.abs(lp1 - lp0), lp0


def _causality_violations(m, positions, diff, lp0):
  bad = []
  for k, (t, i) in enumerate(positions):
    tol = UNCHANGED_TOL * (1.0 + np.abs(lp0[:, k]))
    leaked = ~m.may_depend(t, i) & (diff[:, k] > tol)
    for t2, j in zip(*np.nonzero(leaked)):
      bad.append(f'y[{t},{i}] -> log_prob[{t2},{j}] (|change| {diff[t2, k, j]:.2e})')
  return bad


@pytest.mark.parametrize('case', CAUSAL)
def test_causality(case):
  """log_prob of an element never depends on elements after it in the model's order
  (generative model: z drawn from the prior with a fixed key), and does depend on the
  element itself, on the elements the order puts after it, and on it via later steps."""
  m = _setup(case)
  positions, diff, lp0 = _perturbation_diffs(m, seed=11)
  assert _causality_violations(m, positions, diff, lp0) == []
  # Unperturbed columns are unchanged (batch columns are independent).
  assert np.all(diff[:, len(positions):] == 0.0)

  missing = []
  for k, (t, i) in enumerate(positions):
    for j in np.nonzero(m.must_depend(t, i)[t])[0]:
      if diff[t, k, j] <= CHANGED_TOL:
        missing.append(f'y[{t},{i}] -/-> log_prob[{t},{j}]')
    for t2 in range(t + 1, T):  # x[t+1] carries y[t] into every later step
      if diff[t2, k].max() <= CHANGED_TOL:
        missing.append(f'y[{t},{i}] -/-> step {t2}')
  assert missing == []


@pytest.mark.parametrize('case', ['f_srnn'])
def test_posterior_latent_sees_future_targets(case):
  """With z from the posterior (it reads y[t:] through the backward LSTM), the check
  above flags dependence on later targets: the causality test can fail."""
  m = _setup(case)
  positions, diff, lp0 = _perturbation_diffs(m, seed=12, latent_source='posterior')
  for k, (t, i) in enumerate(positions):
    if t > 0:
      assert diff[:t, k].max() > CHANGED_TOL, (t, i)  # earlier steps see y[t]
  assert _causality_violations(m, positions, diff, lp0) != []


@pytest.mark.parametrize('case', ['rnn_hier_made_joint_ln', 'rnn_hier_made_joint_ln_bern'])
def test_joint_layernorm_leaks_within_step(case):
  """The reference's LayerNorm over the joint [D, d_nade] block (spec §2.5, §11.8): block
  j's features are normalised with statistics of blocks u > i that read y_i, so y[t, i]
  changes log_prob[t, j] for every j < i. y[t, D-1] is read by no block, so it leaks
  nowhere; the default (per-block LayerNorm) is causal (test_causality)."""
  m = _setup(case)
  positions, diff, lp0 = _perturbation_diffs(m, seed=13)
  for k, (t, i) in enumerate(positions):
    earlier = diff[t, k, :i]
    if 1 <= i <= m.d - 2:
      assert np.all(earlier > CHANGED_TOL), (t, i, earlier)
    if i == m.d - 1:
      assert np.all(earlier <= UNCHANGED_TOL * (1 + np.abs(lp0[t, k, :i]))), (t, i, earlier)
    assert diff[:t, k].max(initial=0.0) <= UNCHANGED_TOL  # still causal across steps
  assert _causality_violations(m, positions, diff, lp0) != []


# ----------------------------------------------------------------------------------------
# Normalisation.
# ----------------------------------------------------------------------------------------
def _all_binary(d):
  return np.array([[(c >> j) & 1 for j in range(d)] for c in range(2 ** d)], np.float32)


def _enumerated_log_mass(m):
  """log sum_{y_T-1} p(y_T-1 | past) over all 2^D outcomes of the last step, for two
  random binary pasts (columns 0..2^D-1 and 2^D..2^(D+1)-1 of one batch)."""
  outcomes = _all_binary(m.d)
  n = len(outcomes)
  s = m.sequences(seed=21)
  s[:, n:2 * n] = s[:, n:n + 1]  # second past, shared by its block of columns
  s[:, :n] = s[:, :1]            # first past
  s[T, :n], s[T, n:2 * n] = outcomes, outcomes
  lp = m(s)[T - 1].sum(-1)  # log p(y_T-1 | past), per column
  return np.array([special.logsumexp(lp[:n]), special.logsumexp(lp[n:2 * n])])


@pytest.mark.parametrize('case', ['f_rnn_bern', 'rnn_hier_bern', 'rnn_hier_made_bern',
                                  'delta_rnn_interleave_bern', 'delta_rnn_random_bern'])
def test_bernoulli_step_sums_to_one(case):
  m = _setup(case)
  assert m.d == 3
  np.testing.assert_allclose(_enumerated_log_mass(m), 0.0, atol=1e-5)


def test_joint_layernorm_is_not_normalised():
  """The reference's joint LayerNorm gives a density whose 2^D outcomes do not sum to 1."""
  assert np.abs(_enumerated_log_mass(_setup('rnn_hier_made_joint_ln_bern'))).max() > 1e-3


@pytest.mark.parametrize('case', ['srnn_hier_bern'])
def test_latent_bernoulli_step_sums_to_one_given_z(case):
  """p(y_t | past, z) of a latent model sums to one for a fixed prior draw of z (vmap
  over the 2^D outcomes with one shared key, so every outcome sees the same z)."""
  m = _setup(case)
  outcomes = _all_binary(m.d)
  past = m.sequences(seed=22, shape=(T, 2, m.d))
  s = np.broadcast_to(past, (len(outcomes),) + past.shape).copy()  # [2^D, T, 2, D]
  s = np.concatenate([s, np.broadcast_to(outcomes[:, None, None, :],
                                         (len(outcomes), 1, 2, m.d))], axis=1)
  lp = np.asarray(m.score_shared_z(m.params, jnp.asarray(s[:, :-1]),
                                   jnp.asarray(s[:, 1:]), KEY), np.float64)
  log_mass = special.logsumexp(lp[:, T - 1].sum(-1), axis=0)  # [2]
  np.testing.assert_allclose(log_mass, 0.0, atol=1e-5)


def _grid():
  """Dense in [-15, 15], geometric tails to +-1e4 (trapezoid on a non-uniform grid)."""
  tail = np.geomspace(15.0, 1e4, 2000)[1:]
  return np.concatenate([-tail[::-1], np.linspace(-15.0, 15.0, 12001), tail])


def test_flat_gmm_density_integrates_to_one():
  m = _setup('rnn_flat')
  grid = _grid()
  past = m.sequences(seed=23)[:T, :1]  # one past, broadcast to every column
  log_p = []
  for start in range(0, len(grid), m.width):
    chunk = grid[start:start + m.width]
    s = np.broadcast_to(past, (T, m.width, 1)).copy()
    last = np.zeros((1, m.width, 1), np.float32)
    last[0, :len(chunk), 0] = chunk
    log_p.append(m(np.concatenate([s, last]))[T - 1, :len(chunk), 0])
  mass = np.trapezoid(np.exp(np.concatenate(log_p)), grid)
  np.testing.assert_allclose(mass, 1.0, atol=1e-3)


def test_flat_srnn_gmm_density_integrates_to_one_given_z():
  m = _setup('srnn_flat')
  grid = _grid()
  past = m.sequences(seed=24, shape=(T, 1, 1))
  log_p = []
  for start in range(0, len(grid), m.width):
    chunk = np.zeros(m.width, np.float32)
    n = len(grid[start:start + m.width])
    chunk[:n] = grid[start:start + m.width]
    s = np.concatenate([np.broadcast_to(past, (m.width, T, 1, 1)),
                        chunk[:, None, None, None]], axis=1)  # [width, T+1, 1, 1]
    lp = m.score_shared_z(m.params, jnp.asarray(s[:, :-1]), jnp.asarray(s[:, 1:]), KEY)
    log_p.append(np.asarray(lp, np.float64)[:n, T - 1, 0, 0])
  mass = np.trapezoid(np.exp(np.concatenate(log_p)), grid)
  np.testing.assert_allclose(mass, 1.0, atol=1e-3)


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
