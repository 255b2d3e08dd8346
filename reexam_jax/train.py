"""Training: a pure jitted train step and the loop around it (validation, best-on-valid
selection, checkpoints, metrics.jsonl, results.json with the test scores)."""
import dataclasses
import json
import math
import os
import signal
import statistics
import time
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
import tqdm

from reexam_jax import checkpointing
from reexam_jax import config_checks
from reexam_jax import errors
from reexam_jax import evaluate
from reexam_jax import experiments
from reexam_jax import fileio
from reexam_jax import models
from reexam_jax import parallel
from reexam_jax import preemption
from reexam_jax import state as state_lib
from reexam_jax import workdir as workdir_lib
from reexam_jax.data import batching
from reexam_jax.data import load_dataset
from reexam_jax.data import midi


def kl_weight(config, step):
  """KL annealing: kl_init at the first step, + kl_increment per step, capped at 1."""
  return jnp.minimum(1.0, config.kl_init + step * config.kl_increment)


NO_STEP = jnp.iinfo(jnp.int32).max  # first_nonfinite of a term that stayed finite


def finite_terms(nll, kl, grads) -> Dict[str, Dict[str, jax.Array]]:
  """Which terms of one step are finite (bool scalars): {'loss': {'NLL', 'KL'}, 'grad':
  {group: all of its gradient}}, a group being a top-level entry of the params tree."""
  all_finite = lambda tree: jax.tree.reduce(
      jnp.logical_and, jax.tree.map(lambda g: jnp.isfinite(g).all(), tree))
  return dict(loss=dict(NLL=jnp.isfinite(nll), KL=jnp.isfinite(kl)),
              grad={group: all_finite(g) for group, g in grads.items()})


def make_loss_fn(model, config):
  """loss_fn(params, x, y, kl_weight, rng, mask=None) -> (loss, metrics) with x, y:
  [T, B, D] and mask [T, B] (1 where y is a real step; None: all are).

  The loss is the reference's: mean over the (unmasked) steps of the NLL and KL summed
  over the step, times loss_elements / D (per sample for speech, per 88-note step for
  MIDI, per valid step for handwriting), in training mode (dropout on, z sampled from
  the posterior), plus the core's `aux_cost` where it has one (Z-forcing's auxiliary
  cost). Metrics are sums with their denominators.
  """
  def loss_fn(params, x, y, w, rng, mask=None):
    dropout_rng, latent_rng = jax.random.split(rng)
    out = model.apply({'params': params}, x, y, deterministic=False,
                      rngs={'dropout': dropout_rng, 'latent': latent_rng})
    t, b, d = y.shape
    if mask is None:  # every step is real
      nll, kl, elements = -out['log_prob'].sum(), out['kl'].sum(), jnp.float32(t * b * d)
      aux = out['aux_cost'].sum() if 'aux_cost' in out else 0.0  # training-only term
    else:
      nll = -(out['log_prob'].sum(-1) * mask).sum()
      kl = (out['kl'] * mask).sum()
      aux = (out['aux_cost'] * mask).sum() if 'aux_cost' in out else 0.0
      elements = mask.sum() * d
    loss = (nll + w * kl + aux) * config.loss_elements / elements
    return loss, dict(loss=loss, nll=nll, kl=kl, elements=elements)

  return loss_fn


def make_train_step(model, optimizer, config):
  """train_step(state, x, y, rng, mask=None) -> (state, metrics); x, y: [T, B, D],
  mask [T, B] for padded whole-sequence batches.

  The loss is make_loss_fn's. Metrics are sums with their denominators, reduced on the
  host. Every matmul of the forward and backward pass uses the model's precision
  (models.build_model's, config.matmul_precision for training); parameters, optimiser
  state and element-wise work stay float32.

  A step whose NLL, KL or gradient is not finite changes neither the parameters nor the
  optimiser state (only state.step advances) and adds nothing to the loss sums; it is
  counted in metrics['nonfinite_steps'], and metrics['first_nonfinite'] holds, per term
  of `finite_terms`, this step's number (state.step + 1) if that term is not finite,
  else NO_STEP. The host decides, without blocking on every step, whether to stop.
  """
  loss_fn = make_loss_fn(model, config)

  def train_step(state, x, y, rng, mask=None):
    rng = jax.random.fold_in(rng, state.step)
    w = kl_weight(config, state.step)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, x, y, w, rng, mask)
    finite = finite_terms(metrics['nll'], metrics['kl'], grads)
    ok = jax.tree.reduce(jnp.logical_and, finite)

    def update(params, opt_state):
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    # A branch, not a select of both results: no extra pass over parameters and
    # optimiser state on healthy steps.
    params, opt_state = jax.lax.cond(ok, update, lambda p, s: (p, s), state.params,
                                     state.opt_state)
    metrics = {k: jnp.where(ok, v, 0.0) for k, v in metrics.items()}
    metrics.update(kl_weight=w, steps=ok.astype(jnp.float32),
                   nonfinite_steps=(~ok).astype(jnp.float32),
                   first_nonfinite=jax.tree.map(
                       lambda f: jnp.where(f, NO_STEP, state.step + 1), finite))
    return state_lib.TrainState(state.step + 1, params, opt_state), metrics

  return jax.jit(train_step, donate_argnums=(0,))


@jax.jit
def accumulate(sums, metrics):
  """The window's metrics plus one step's: sums, except first_nonfinite (a minimum)."""
  out = {k: sums[k] + v for k, v in metrics.items() if k != 'first_nonfinite'}
  out['first_nonfinite'] = jax.tree.map(jnp.minimum, sums['first_nonfinite'],
                                        metrics['first_nonfinite'])
  return out


def nonfinite_message(first_nonfinite: Dict[str, Dict[str, int]]) -> Optional[str]:
  """'step 7: non-finite NLL, gradient of core, output' for the first non-finite step
  in first_nonfinite (host integers, as `accumulate` leaves them); None if none."""
  first = min(v for terms in first_nonfinite.values() for v in terms.values())
  if first == NO_STEP:
    return None
  bad = lambda kind: [k for k, v in sorted(first_nonfinite[kind].items()) if v == first]
  parts = bad('loss') + ([f'gradient of {", ".join(bad("grad"))}'] if bad('grad') else [])
  return f'step {first}: non-finite {", ".join(parts)}'


def stop_if_nonfinite(first_nonfinite, ckpt: checkpointing.Checkpointer) -> None:
  """Raises TrainingDiverged naming the first non-finite step of the window, after the
  checkpoints saved so far (all from before it) are complete on disk."""
  bad = nonfinite_message(first_nonfinite)
  if bad:
    ckpt.wait()
    last = ckpt.latest_step()
    ckpt.close()
    kept = ('no checkpoint was saved' if last is None
            else f'the last checkpoint (step {last}) is kept')
    raise errors.TrainingDiverged(f'training diverged at {bad}; {kept}; '
                                  '--config.skip_nonfinite=True skips such steps instead')


def _ratio(total, count) -> float:
  """total / count as a Python float; NaN for an empty window (every step skipped)."""
  return float(total) / float(count) if count else math.nan


def own_copy(params):
  """A copy of params in buffers of its own: the train step donates (frees) the
  state's buffers, so parameters kept across steps (the best ones) must not alias them."""
  return jax.tree.map(jnp.copy, params)


class MetricsLog:
  """workdir/metrics.jsonl, one JSON object per line; on resume, lines past the
  restored step are dropped so the file matches an uninterrupted run. Lines come in
  step order, so they are cut off by one truncation: in place (a full disk cannot stop
  it) and never halfway through a line."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.enabled = parallel.is_main_process()
    if self.enabled and os.path.exists(self.path):
      with open(self.path, 'r+b') as f:
        kept_bytes = 0
        for line in f:
          if line.strip() and json.loads(line)['step'] > resume_step:
            break
          kept_bytes += len(line)
        f.truncate(kept_bytes)

  def write(self, **record) -> None:
    if self.enabled:
      fileio.append_json_line(self.path, record)


def window_to_json(sums):
  """The train metrics summed since the last metrics line, as JSON numbers (a tree
  like sums) for the checkpoint record, so a run resumed between two log steps logs
  the same averages. `window_from_json` reverses it exactly (float32 and int32 scalars
  survive the trip through Python numbers)."""
  return jax.tree.map(lambda v: v.item(), jax.device_get(sums))


def window_from_json(window):
  """window_to_json's inverse: the sums as JAX scalars."""
  return jax.tree.map(jnp.asarray, window)


def split_record(config, model) -> Dict[str, Any]:
  """delta-RNN runs: the leaked elements (for piano rolls also as MIDI pitches), since
  the random split differs from seed to seed; {} for the other models."""
  leaked = models.leaked_elements(model)
  if leaked is None:
    return {}
  record = dict(leaked_elements=leaked)
  if experiments.DATASETS[config.dataset].domain == 'midi':
    record['leaked_pitches'] = [midi.LOWEST_PITCH + i for i in leaked]
  return record


@dataclasses.dataclass
class Progress:
  """What the loop carries from step to step and saves in checkpoints: the train state,
  the best-on-valid parameters, the record (best_valid_ll, best_step, skipped_steps,
  the run's config) and the train metrics summed since the last metrics line."""
  state: state_lib.TrainState
  best_params: Any
  record: Dict[str, Any]
  sums: Dict[str, Any]

  def add(self, metrics) -> None:
    self.sums = accumulate(self.sums, metrics) if self.sums else metrics

  def checkpoint_record(self, stream, done: int) -> Dict[str, Any]:
    """The record saved at step done, with the data position and the open window."""
    epoch, chunk = stream.position(done)
    return dict(self.record, data_epoch=epoch, data_chunk=chunk,
                log_window=window_to_json(self.sums))


class StepTimer:
  """Times the loop's train steps: the first (compilation included, waited for) as
  compile_s, the others per metrics window (window_ms), evaluation time left out."""

  def __init__(self):
    self.compile_s, self.window_ms = 0.0, []
    self._first, self._start, self._steps = True, time.time(), 0

  def run(self, train_step, state, *args):
    """train_step(state, *args), timed."""
    if not self._first:
      self._steps += 1
      return train_step(state, *args)
    t0 = time.time()
    out = train_step(state, *args)
    jax.block_until_ready(out[0])
    self.compile_s, self._first = time.time() - t0, False
    self._start = time.time()
    return out

  def end_window(self) -> None:
    """At a metrics line: the window's mean step time, and a new window."""
    if self._steps:
      self.window_ms.append(1e3 * (time.time() - self._start) / self._steps)
    self._start, self._steps = time.time(), 0

  def resume(self) -> None:
    """After an evaluation, which is not step time."""
    self._start = time.time()

  def median_ms(self) -> Optional[float]:
    return statistics.median(self.window_ms) if self.window_ms else None


def check_inputs(config, workdir: str) -> None:
  """UserError for bad config values or a workdir that is not writable or holds
  another config, before anything is read or written."""
  config_checks.validate(config)
  workdir_lib.check_writable(workdir)
  workdir_lib.check_config(config, workdir)


def checked_mesh(config):
  """The device mesh; UserError when a batch size does not divide over it."""
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh, '--config.eval_batch_size')
  return mesh


def start_or_resume(config, workdir: str, model, optimizer, init_rng, mesh
                    ) -> Tuple[Progress, checkpointing.Checkpointer]:
  """Progress from workdir's latest checkpoint, else from fresh parameters, with the
  train state replicated over the mesh; and the run's checkpointer. Creates workdir and
  records config in workdir/config.json first."""
  params = models.init_params(model, init_rng, config.model.d_data)
  state = jax.device_put(state_lib.initial_state(params, optimizer),
                         parallel.replicated(mesh))
  best_params = own_copy(state.params)
  record = dict(best_valid_ll=-math.inf, best_step=0, skipped_steps=0)
  os.makedirs(workdir, exist_ok=True)
  if parallel.is_main_process():
    workdir_lib.write_config(config, workdir)
  ckpt = checkpointing.Checkpointer(workdir)
  if ckpt.latest_step() is not None:
    state, best_params, restored = ckpt.restore(state, best_params)
    record.update(restored)
  record['config'] = workdir_lib.config_dict(config)  # saved with every checkpoint
  # Checkpoints written before log_window was recorded resume with an empty window.
  sums = window_from_json(record.pop('log_window', {}))
  return Progress(state, best_params, record, sums), ckpt


def due(config, done: int, stopping: bool) -> Tuple[bool, bool, bool]:
  """(log, evaluate, save) after step done; the last step does all three, and a stop
  request saves."""
  last = done == config.num_steps
  return (done % config.log_every == 0 or last, done % config.eval_every == 0 or last,
          done % config.checkpoint_every == 0 or last or stopping)


def say(bar, text: str) -> None:
  """Prints text above the progress bar, on the main process only (every process runs
  the same loop and would print the same line)."""
  if parallel.is_main_process():
    bar.write(text)


def log_window(config, progress: Progress, host, kl_weight_now, done: int,
               log: MetricsLog, bar) -> None:
  """Writes the metrics line of the window ending at step done (host: the sums on the
  host) and starts a new window; with skip_nonfinite, counts and reports skipped steps."""
  n = float(host['elements']) / config.loss_elements  # loss units in the window
  line = dict(step=done, train_loss=_ratio(host['loss'], host['steps']),
              train_ll=-_ratio(host['nll'], n),
              learning_rate=float(state_lib.learning_rate_schedule(config)(done - 1)))
  if models.is_latent(config.model.name):
    line.update(train_kl=_ratio(host['kl'], n), kl_weight=float(kl_weight_now))
  if config.skip_nonfinite:
    line.update(skipped_steps=int(host['nonfinite_steps']))
    progress.record['skipped_steps'] += line['skipped_steps']
    if line['skipped_steps']:
      say(bar, f'skipped {line["skipped_steps"]} non-finite step(s) up to step {done} '
                f'({progress.record["skipped_steps"]} in all), the first at '
                f'{nonfinite_message(host["first_nonfinite"])}')
  log.write(**line)
  bar.set_postfix(loss=f'{line["train_loss"]:.3f}', ll=f'{line["train_ll"]:.3f}')
  progress.sums = {}


def validate(config, evaluator, seqs, eval_rng, done: int, progress: Progress,
             log: MetricsLog, bar) -> None:
  """Scores the parameters after step done on seqs, logs the score, and keeps them as
  the best when they beat the best so far (a non-finite score never does)."""
  valid_ll = evaluator(progress.state.params, seqs, jax.random.fold_in(eval_rng, done))['elbo']
  log.write(step=done, valid_ll=valid_ll)
  record = progress.record
  if math.isfinite(valid_ll) and valid_ll > record['best_valid_ll']:
    progress.best_params = own_copy(progress.state.params)
    record.update(best_valid_ll=valid_ll, best_step=done)
  unit = evaluate.ll_unit(config.normalisation, config.model.d_data, config.dataset)
  say(bar, f'step {done}: valid {unit} {valid_ll:.4f} '
            f'(best {record["best_valid_ll"]:.4f} at {record["best_step"]})')


def final_results(config, model, progress: Progress, timer: StepTimer, test_scores
                  ) -> Dict[str, Any]:
  """results.json's fields, but wall_s."""
  record = progress.record
  results = dict(
      dataset=config.dataset, model=config.model.name,
      params=models.count_params(model, progress.best_params), steps=config.num_steps,
      best_step=record['best_step'], valid_ll=record['best_valid_ll'],
      skipped_steps=record['skipped_steps'], step_time_ms_median=timer.median_ms(),
      compile_s=timer.compile_s)
  results.update(test_scores)
  results.update(split_record(config, model))
  return results


def make_stream(config, train_seqs):
  """This process's rows of the training batches (parallel.local_rows): whole padded
  sequences with masks (batching.PaddedStream) for whole-sequence datasets, else chunks
  of the concatenated stream."""
  rows = parallel.local_rows(config.batch_size)
  if config.whole_sequences:
    return batching.PaddedStream(train_seqs, config.batch_size, config.model.d_data,
                                 config.pad_multiple, config.seed, rows)
  return batching.make_train_stream(train_seqs, config.batch_size, config.model.d_data,
                                    config.tgt_len, config.seed, config.buffer_files or None,
                                    rows=rows)


def train_and_evaluate(config, workdir: str) -> Dict[str, Any]:
  """Trains config's model, keeps the best-on-valid parameters, scores the test set and
  writes workdir/results.json. Resumes from workdir's latest checkpoint if any.

  Bad input (config values, a workdir of another config or not writable, unusable
  data) raises errors.UserError before workdir is made or changed; workdir/config.json
  records config before the first checkpoint.

  SIGTERM or SIGINT during the training loop finishes the current step, saves a
  checkpoint and raises errors.TrainingInterrupted. During the final test evaluation
  they act as usual (SIGTERM ends the process, SIGINT raises KeyboardInterrupt); the
  last checkpoint is complete by then, so a rerun only evaluates."""
  wall_start = time.time()
  check_inputs(config, workdir)
  mesh = checked_mesh(config)
  data = parallel.first_process_first(lambda: load_dataset(config))
  model = models.build_model(config.model, config.seed, precision=config.matmul_precision)
  init_rng, train_rng, eval_rng = state_lib.run_keys(config.seed)
  optimizer = state_lib.make_optimizer(config)
  progress, ckpt = start_or_resume(config, workdir, model, optimizer, init_rng, mesh)
  start_step = int(progress.state.step)
  log = MetricsLog(workdir, start_step)
  stream = make_stream(config, data['train'])
  train_step = make_train_step(model, optimizer, config)
  evaluator = evaluate.make_evaluator(  # reported numbers: true float32 matmuls
      config, models.build_model(config.model, config.seed, precision='highest'), data,
      mesh=mesh)
  timer = StepTimer()
  bar = tqdm.tqdm(total=config.num_steps, initial=start_step, dynamic_ncols=True,
                  disable=not config.progress_bar or not parallel.is_main_process())
  # SIGTERM/SIGINT (preemption, Ctrl-C) to any process end the loop after the current
  # step and a save, on all processes at the same step.
  stopped = 0  # the signal that stopped the loop, 0 while none
  with preemption.stop_signals() as stop:
    for step in range(start_step, config.num_steps):
      x, y, *mask = (parallel.put_batch(a, mesh, config.batch_size)
                     for a in stream.batch(step))
      progress.state, metrics = timer.run(train_step, progress.state, x, y, train_rng, *mask)
      progress.add(metrics)
      done = step + 1
      bar.update(1)
      stopped = parallel.max_over_processes(stop.signum or 0)
      log_now, eval_now, save_now = due(config, done, stopping=bool(stopped))
      if log_now or eval_now or save_now:  # the host waits for the step here, not before
        host = jax.device_get(progress.sums)
        if not config.skip_nonfinite:
          stop_if_nonfinite(host['first_nonfinite'], ckpt)
      if log_now:
        log_window(config, progress, host, metrics['kl_weight'], done, log, bar)
        timer.end_window()
      if eval_now:
        validate(config, evaluator, data['valid'], eval_rng, done, progress, log, bar)
        timer.resume()
      if save_now:
        ckpt.save(done, progress.state, progress.best_params,
                  progress.checkpoint_record(stream, done))
      if stopped:
        break
    bar.close()
    ckpt.wait()  # still inside: a second signal cannot cut the write short
    ckpt.close()
  if stopped:
    raise errors.TrainingInterrupted(
        f'{signal.Signals(stopped).name}: stopped after step {int(progress.state.step)} of '
        f'{config.num_steps} and saved a checkpoint in {workdir}; run the same command to '
        'resume', stopped)
  test_scores = evaluate.score_test(config, evaluator, progress.best_params, data['test'],
                                    eval_rng)
  results = dict(final_results(config, model, progress, timer, test_scores),
                 wall_s=time.time() - wall_start)
  if parallel.is_main_process():
    fileio.write_json(os.path.join(workdir, 'results.json'), results)
  return results
