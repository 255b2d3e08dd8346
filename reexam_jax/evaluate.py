"""Log-likelihoods on whole sequences, in the paper's units (docs/reference.md,
"Evaluation").

Deterministic models get the exact chunked log-likelihood. Latent models get three
numbers per set, all computed chunk by chunk from a zero state as the reference does:
  elbo   one posterior sample, analytic KL (the number the paper reports),
  iwae   the importance-weighted bound with K posterior samples (tighter, -> log p),
  prior  log mean_k p(y | z_k) with z_k from the prior (consistent, high variance).
Each comes with its standard error over the test sequences (`normalised_stderr`), and
the ELBO also with its Monte-Carlo standard error given the data (`elbo_mc_stderr`).

`score_test` reports a run's test numbers from its best-on-valid parameters, at the end
of training or later from its workdir (`evaluate_checkpoint`).
"""
import functools
import math
import os
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from reexam_jax import experiments
from reexam_jax import fileio
from reexam_jax import models
from reexam_jax import parallel
from reexam_jax import state as state_lib
from reexam_jax.data import batching
from reexam_jax.data import load_dataset


def ll_unit(normalisation, d_data: int, dataset: str = '') -> str:
  """Human-readable unit of a reported LL."""
  if dataset == 'array_folder' and normalisation == 1:
    return 'nats/value'  # per element of the (standardised) [T, D] sequences
  if normalisation == 'sequence':
    return 'nats/sequence'
  if normalisation == 1:
    return 'nats/sample' if d_data != 88 else 'nats/element'
  if normalisation == 88:
    return 'nats/88-note step'
  return f'nats/{normalisation} samples'


def normalise(total: float, num_sequences: int, num_elements: float, normalisation) -> float:
  """total LL -> the paper's number: per sequence, or per element times n."""
  if normalisation == 'sequence':
    return total / num_sequences
  return total / num_elements * float(normalisation)


def normalised_stderr(totals: np.ndarray, num_elements: np.ndarray,
                      normalisation) -> float:
  """Standard error of `normalise` from per-sequence totals [N] and element counts [N].

  The sequences (with their latent draws) are treated as i.i.d.: per sequence, the
  standard error of the mean; per element x n, the delta-method standard error of the
  ratio sum(totals) / sum(elements), times n. NaN for fewer than two sequences.
  """
  totals, num_elements = np.asarray(totals, np.float64), np.asarray(num_elements, np.float64)
  n = len(totals)
  if n < 2:
    return math.nan
  if normalisation == 'sequence':
    return float(np.std(totals, ddof=1) / math.sqrt(n))
  resid = totals - totals.sum() / num_elements.sum() * num_elements
  return float(math.sqrt(n / (n - 1) * np.square(resid).sum()) / num_elements.sum()
               * float(normalisation))


def make_chunk_scorer(model, num_samples: int, latent_source: str, mesh) -> Callable:
  """jit(params, x, y, mask, rng) -> (log-sum-exp of the importance weights [B], ELBO
  of each draw [S, B]), for `num_samples` latent draws at once. x, y, mask come sharded
  over `mesh` (parallel.put_batch, each process holding its own rows); the outputs are
  replicated on every device, so each process reads all rows and sums them once, as
  one process would.

  With one sample and the posterior, the bound is log p(y|z) + log p(z) - log q(z); its
  expectation is the ELBO. For deterministic models every number is the exact LL.
  Reported likelihoods come from a model built with precision='highest' (true float32).
  """
  def one_sample(params, x, y, mask, rng):
    rngs = dict(zip(('latent', 'dropout'), jax.random.split(rng)))
    out = model.apply({'params': params}, x, y, deterministic=True,
                      latent_source=latent_source, rngs=rngs)
    log_py = (out['log_prob'].sum(-1) * mask).sum(0)  # [B]
    log_w = log_py + (out['log_ratio'] * mask).sum(0)  # [B]
    elbo = log_py - (out['kl'] * mask).sum(0)  # [B]
    return log_w, elbo

  @functools.partial(jax.jit, out_shardings=parallel.replicated(mesh))
  def score(params, x, y, mask, rng):
    keys = jax.random.split(rng, num_samples)
    log_w, elbo = jax.vmap(one_sample, in_axes=(None, None, None, None, 0))(
        params, x, y, mask, keys)  # [S, B]
    return jax.nn.logsumexp(log_w, axis=0), elbo  # [B], [S, B]
  return score


class Evaluator:
  """Scores data sets with one model; compiled scorers are cached per sample count."""

  def __init__(self, model, *, d_data: int, batch_size: int, tgt_len: int,
               normalisation, samples_per_pass: int = 8, sort: bool = True,
               max_batches: int = 0, pad_multiple: int = 1, mesh=None):
    """tgt_len: steps per chunk, 0 for whole sequences (padded to a multiple of
    pad_multiple steps). mesh: the devices that share each chunk's rows (default: all,
    parallel.make_mesh; batch_size must divide over them)."""
    self.mesh = mesh or parallel.make_mesh()
    self.model, self.d_data, self.batch_size = model, d_data, batch_size
    self.pad_multiple = pad_multiple
    self.tgt_len, self.normalisation, self.sort = tgt_len, normalisation, sort
    self.samples_per_pass, self.max_batches = samples_per_pass, max_batches
    self._scorers = {}

  def _scorer(self, num_samples: int, latent_source: str):
    key = (num_samples, latent_source)
    if key not in self._scorers:
      self._scorers[key] = make_chunk_scorer(self.model, num_samples, latent_source,
                                             self.mesh)
    return self._scorers[key]

  def per_sequence(self, params, seqs, rng, num_samples: int = 1,
                   latent_source: str = 'posterior') -> Dict[str, Any]:
    """Totals of each sequence of `seqs` (a list of arrays or a lazy split, see
    data.batching), in evaluation order: 'index' [N] (of the sequence in seqs, after
    max_batches' subset), 'bound' [N] and 'elbo' [N] (nats; see __call__), 'steps' [N]
    (model steps), and 'mc_var', the Monte-Carlo variance of the summed ELBO given the
    sequences (0 for one sample).

    The importance bound with K = num_samples is accumulated over passes of at most
    `samples_per_pass` samples with a running logsumexp, so memory stays bounded.
    """
    per_pass = min(self.samples_per_pass, num_samples)
    if num_samples % per_pass:
      raise ValueError(f'iwae_samples ({num_samples}) must be a multiple of iwae_chunk '
                       f'({per_pass})')
    score = self._scorer(per_pass, latent_source)
    if self.max_batches:
      seqs = batching.eval_subset(seqs, self.max_batches * self.batch_size, self.d_data,
                                  self.sort)
    order = batching.eval_order(seqs, self.d_data, self.sort)
    steps = batching.sequence_lengths(seqs)[order] // self.d_data  # [N], in that order
    rows = parallel.local_rows(self.batch_size)
    bound, elbo = [], []  # per sequence, in evaluation order
    mc_var, chunk_index = 0.0, 0
    for start in range(0, len(order), self.batch_size):
      group = order[start:start + self.batch_size]
      t_max = int(steps[start:start + self.batch_size].max())
      sums = np.zeros((2, self.batch_size))  # bound, elbo of each batch row
      # This process's rows of the batch's chunks (as many as on every other process).
      for chunk in batching.batch_chunks(seqs, group, t_max, self.batch_size, self.d_data,
                                         self.tgt_len, self.pad_multiple, rows):
        chunk_rng = jax.random.fold_in(rng, chunk_index)
        chunk_index += 1
        # [L, B, D], [L, B, D], [L, B] global arrays of this process's rows.
        x, y, mask = (parallel.put_batch(a, self.mesh, self.batch_size)
                      for a in (chunk.x, chunk.y, chunk.mask))
        lse, draws = None, []
        for p in range(num_samples // per_pass):
          b, e = score(params, x, y, mask, jax.random.fold_in(chunk_rng, p))
          lse = b if lse is None else jnp.logaddexp(lse, b)
          draws.append(np.asarray(e, np.float64))
        draws = np.concatenate(draws)  # [S, B] ELBO draws
        sums += [np.asarray(lse, np.float64) - math.log(num_samples), draws.mean(0)]
        if num_samples > 1:
          mc_var += float((draws.var(0, ddof=1) / num_samples).sum())
      bound.append(sums[0, :len(group)])
      elbo.append(sums[1, :len(group)])
    bound, elbo = np.concatenate(bound), np.concatenate(elbo)
    # The first step of a sequence is never scored.
    return dict(index=np.asarray(order), bound=bound, elbo=elbo,
                steps=np.maximum(steps - 1, 0).astype(np.float64), mc_var=mc_var)

  def __call__(self, params, seqs, rng, num_samples: int = 1,
               latent_source: str = 'posterior') -> Dict[str, float]:
    """Scores `seqs` (see per_sequence).

    Returns, in the paper's units: 'bound' and 'elbo'; their standard errors over the
    sequences 'bound_stderr' and 'elbo_stderr' (test-set spread plus Monte-Carlo noise);
    'elbo_mc_stderr', the Monte-Carlo standard error of 'elbo' given these sequences,
    from the spread of the num_samples draws (NaN for one draw; 0 for deterministic
    models); and 'num_sequences', 'num_steps'.
    """
    scores = self.per_sequence(params, seqs, rng, num_samples, latent_source)
    bound, elbo, steps = scores['bound'], scores['elbo'], scores['steps']
    elements = steps * self.d_data
    norm = lambda total: normalise(total, len(steps), elements.sum(), self.normalisation)
    stderr = lambda v: normalised_stderr(v, elements, self.normalisation)
    return dict(bound=norm(bound.sum()), elbo=norm(elbo.sum()),
                bound_stderr=stderr(bound), elbo_stderr=stderr(elbo),
                elbo_mc_stderr=(norm(math.sqrt(scores['mc_var'])) if num_samples > 1
                                else math.nan),
                num_sequences=len(steps), num_steps=float(steps.sum()))


def make_evaluator(config, model, data, max_batches: Optional[int] = None, mesh=None
                   ) -> Evaluator:
  """config's evaluator of `data` (load_dataset's): batches sorted by length, except for
  file-list datasets (VCTK, Blizzard) which the reference evaluates in list order
  (data['sort_eval']); whole sequences for the whole-sequence (handwriting) datasets.
  max_batches: None for config.max_eval_batches (0: all); mesh: the devices that share
  each chunk (default: all)."""
  return Evaluator(
      model, d_data=config.model.d_data, batch_size=config.eval_batch_size,
      tgt_len=0 if config.whole_sequences else config.eval_tgt_len,
      normalisation=config.normalisation, samples_per_pass=config.iwae_chunk,
      max_batches=config.max_eval_batches if max_batches is None else max_batches,
      sort=data.get('sort_eval', True),
      pad_multiple=config.pad_multiple, mesh=mesh)


def test_split(config) -> str:
  """The split scored as "test": 'valid' for datasets without a test split (IAM-OnDB,
  whose paper numbers are validation LL)."""
  dataset = experiments.DATASETS.get(config.dataset)
  return dataset.test_split if dataset else 'test'


TEST_IS_VALID_NOTE = ('test_* are scored on the validation split (the dataset has no '
                      'test split; the paper reports validation LL)')


def test_keys(eval_rng) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """(ELBO/LL, IWAE, prior-estimate) keys of test scoring from the run's eval key."""
  test_rng, iwae_rng, prior_rng = jax.random.split(jax.random.fold_in(eval_rng, 2**31 - 1), 3)
  return test_rng, iwae_rng, prior_rng


def score_test(config, evaluator: Evaluator, params, seqs, eval_rng) -> Dict[str, Any]:
  """Test LL in the paper's units; latent models add the IWAE bound and the
  prior-sampled estimate with iwae_samples samples (test_ll is the ELBO, as the paper).
  eval_rng: the run's evaluation key (state.run_keys)."""
  test_rng, iwae_rng, prior_rng = test_keys(eval_rng)
  test = evaluator(params, seqs, test_rng)
  out = dict(test_ll=test['elbo'], test_ll_stderr=test['elbo_stderr'],
             test_sequences=test['num_sequences'],
             ll_unit=ll_unit(config.normalisation, config.model.d_data, config.dataset))
  if test_split(config) != 'test':
    out.update(test_split=test_split(config), note=TEST_IS_VALID_NOTE)
  if models.is_latent(config.model.name):
    iwae = evaluator(params, seqs, iwae_rng, num_samples=config.iwae_samples)
    prior = evaluator(params, seqs, prior_rng,
                      num_samples=config.iwae_samples, latent_source='prior')
    out.update(test_elbo=test['elbo'], test_elbo_stderr=test['elbo_stderr'],
               test_iwae=iwae['bound'], test_iwae_stderr=iwae['bound_stderr'],
               test_prior_estimate=prior['bound'], iwae_samples=config.iwae_samples)
  return out


def score_each(config, evaluator: Evaluator, params, seqs, eval_rng) -> Dict[str, np.ndarray]:
  """score_test's numbers per sequence, with its keys, in the order of seqs: 'll' [N]
  (total nats; the ELBO for latent models, as test_ll), 'iwae' [N] (latent models,
  iwae_samples samples), 'elements' [N] (elements scored, what the units divide by).
  For an evaluator of all sequences (max_batches 0), normalising the sum of 'll' by
  'elements' is score_test's test_ll of the same sequences."""
  test_rng, iwae_rng, _ = test_keys(eval_rng)

  def in_order(scores, key):
    out = np.empty(len(seqs))
    out[scores['index']] = scores[key]
    return out
  test = evaluator.per_sequence(params, seqs, test_rng)
  out = dict(ll=in_order(test, 'elbo'), elements=in_order(test, 'steps') * evaluator.d_data)
  if models.is_latent(config.model.name):
    iwae = evaluator.per_sequence(params, seqs, iwae_rng, num_samples=config.iwae_samples)
    out['iwae'] = in_order(iwae, 'bound')
  return out


def evaluate_checkpoint(config, workdir: str) -> Dict[str, Any]:
  """Scores the best parameters of workdir's latest checkpoint on the test set, with
  the same keys as training's final scoring, and writes workdir/eval_results.json."""
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.eval_batch_size, mesh, '--config.eval_batch_size')
  model, best_params, record = state_lib.restore_best(config, workdir,
                                                      parallel.replicated(mesh))
  eval_rng = state_lib.run_keys(config.seed)[2]
  data = parallel.first_process_first(lambda: load_dataset(config))
  results = dict(dataset=config.dataset, model=config.model.name,
                 params=models.count_params(model, best_params),
                 best_step=record['best_step'], valid_ll=record['best_valid_ll'])
  evaluator = make_evaluator(config, model, data, mesh=mesh)
  results.update(score_test(config, evaluator, best_params, data['test'], eval_rng))
  if parallel.is_main_process():
    fileio.write_json(os.path.join(workdir, 'eval_results.json'), results)
  return results
