"""Ancestral sampling from a trained run -> wav (speech), MIDI + piano-roll PNG (music)
or drawn trajectories as PNG (handwriting; `draw_data` draws real sequences the same
way).

`sample_workdir` restores the best-on-valid parameters of a workdir's latest checkpoint
(as `evaluate.evaluate_checkpoint` does, with true float32 matmuls), draws `num_samples`
sequences of `num_steps` steps with `models.sampling.sample` (the trained model's own
modules one step at a time: one jitted lax.scan over steps, and over the elements of a
step for the auto-regressive heads), and writes them under `workdir/samples/`. The
recurrent state is reset every `config.tgt_len` steps, so the samples come from exactly
the chunked density whose test LL is reported (docs/reference.md, "Evaluation"), and
never for whole-sequence (handwriting) datasets; the first input is a zero step. See `models/sampling.py` for the temperature.
"""
import os
import time
from typing import Any, Dict, Optional

from absl import logging
import jax
import numpy as np
from scipy.io import wavfile

from reexam_jax import data as data_lib
from reexam_jax import errors
from reexam_jax import experiments
from reexam_jax import models
from reexam_jax import state as state_lib
from reexam_jax.data import midi
from reexam_jax.data import midi_folder
from reexam_jax.models import sampling

DEFAULT_SAMPLE_RATE = 16000  # all the paper's speech sets are 16 kHz


def speech_stats(config) -> Optional[Dict[str, float]]:
  """The train mean/std (raw scale) and sample rate of a prepared speech set, else None."""
  try:
    data = data_lib.open_speech_dataset(config)
  except FileNotFoundError:
    return None
  return dict(mean=data.mean, std=data.std, sample_rate=data.sample_rate)


def write_wav(path: str, audio: np.ndarray, stats: Optional[Dict[str, float]],
              stride: int = 1) -> None:
  """Normalised audio [N] -> 16-bit PCM: x * std + mean (raw scale, [-1, 1)) when the
  dataset statistics are known, else the normalised values; clipped to [-1, 1]."""
  rate = stats['sample_rate'] if stats else DEFAULT_SAMPLE_RATE
  if stats:
    audio = audio * stats['std'] + stats['mean']
  pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
  wavfile.write(path, int(rate) // stride, pcm)


def midi_grid(config) -> Dict[str, float]:
  """The time grid of written MIDI: midi_folder's own (data.midi_grid), else one step
  per eighth note at 120 bpm (0.25 s), the Boulanger-Lewandowski sets' rate."""
  if config.dataset == 'midi_folder':
    return data_lib.midi_grid(config)
  return dict(steps_per_quarter=2)


def write_piano_roll_png(path: str, roll: np.ndarray, title: str = '') -> None:
  """Piano roll [T, 88] -> PNG (time right, pitch up)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(max(4.0, len(roll) / 25), 4))
  ax.imshow(np.asarray(roll).T, origin='lower', aspect='auto', cmap='Greys',
            interpolation='nearest', extent=(0, len(roll), midi.LOWEST_PITCH - 0.5,
                                             midi.LOWEST_PITCH + 87.5))
  ax.set_xlabel('step')
  ax.set_ylabel('MIDI pitch')
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def data_steps(config, ys: np.ndarray) -> np.ndarray:
  """Samples as model steps ys [T, N, D] -> each sample in the data's steps (whole
  steps only): [N, T', 88] piano rolls (music); [N, T', D] raw values (array_folder:
  the training standardisation undone); [N, samples] normalised audio (speech);
  [N, T, 3] normalised (pen, dx, dy) steps (handwriting)."""
  num = ys.shape[1]
  streams = np.asarray(ys).transpose(1, 0, 2).reshape(num, -1)  # [N, T * D] elements
  domain = experiments.DATASETS[config.dataset].domain
  if domain == 'speech':
    return streams
  if domain == 'handwriting':
    return np.asarray(ys).transpose(1, 0, 2)
  stats = data_lib.training_normalisation(config)['stats'] if domain == 'array' else None
  dim = stats.dim if stats else midi.NUM_PITCHES
  steps = streams[:, :streams.shape[1] // dim * dim].reshape(num, -1, dim)
  return steps * stats.std + stats.mean if stats and stats.kind == 'real' else steps


def trajectory_strokes(steps: np.ndarray, mean=(0.0, 0.0), std: float = 1.0):
  """[T, 3] (pen, dx, dy) steps, normalised with (mean [2], std) -> the pen-down
  strokes, each [n, 2] points, starting at the origin (handwriting.points_to_steps
  inverted: pen = 1 on step k means point k + 1 ends a stroke)."""
  steps = np.asarray(steps, np.float64)
  offsets = steps[:, 1:] * std + np.asarray(mean, np.float64)
  points = np.concatenate([np.zeros((1, 2)), np.cumsum(offsets, axis=0)])  # [T + 1, 2]
  ends = np.nonzero(steps[:, 0] > 0.5)[0] + 1  # indices of stroke-ending points
  return [p for p in np.split(points, ends + 1) if len(p)]


def write_handwriting_png(path: str, seqs, mean=(0.0, 0.0), std: float = 1.0,
                          title: str = '', columns: int = 4) -> None:
  """Sequences of (pen, dx, dy) steps -> one PNG, one panel per sequence (y up, equal
  axes), each stroke a line."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  columns = min(columns, len(seqs))
  rows = -(-len(seqs) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(2.5 * columns, 2.5 * rows + 0.4),
                           squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  for ax, seq in zip(axes.ravel(), seqs):
    for stroke in trajectory_strokes(seq, mean, std):
      ax.plot(stroke[:, 0], stroke[:, 1], 'k-', linewidth=1.2)
    ax.set_aspect('equal', adjustable='datalim')
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=72)
  plt.close(fig)


def draw_data(config, out_dir: str, num_sequences: int = 4, split: str = 'valid',
              seed: int = 0) -> str:
  """Draws `num_sequences` sequences of a handwriting dataset's split, chosen with
  `seed`, as sample_workdir draws samples -> the PNG's path."""
  if experiments.DATASETS[config.dataset].domain != 'handwriting':
    raise errors.UserError(f'--config.dataset={config.dataset}: drawing data is for the '
                           'handwriting datasets')
  data = data_lib.load_dataset(config)
  mean, std = data_lib.handwriting_stats(config)
  pick = np.random.default_rng(seed).choice(len(data[split]),
                                           min(num_sequences, len(data[split])), replace=False)
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f'{config.dataset}_{split}.png')
  write_handwriting_png(path, [data[split][i] for i in pick], mean, std,
                        f'{config.dataset} {split} data')
  return path


def sample_workdir(config, workdir: str, *, num_samples: int = 4, num_steps: int = 0,
                   temperature: float = 1.0, seed: int = 0,
                   sample_dir: Optional[str] = None) -> Dict[str, Any]:
  """Samples from workdir's best parameters and writes them (see the module docstring).

  num_steps: model steps per sample (0: four chunks, 4 * config.tgt_len).
  Returns dict(sample_dir, files, steps_per_s (model steps per second, all samples in
  parallel), compile_s, log_prob (per-sample total log p of the drawn sequence)).
  """
  if temperature <= 0:
    raise ValueError(f'--temperature must be > 0, got {temperature}')
  model, params, _ = state_lib.restore_best(config, workdir)
  num_steps = num_steps or 4 * config.tgt_len
  sample_dir = sample_dir or os.path.join(workdir, 'samples')
  os.makedirs(sample_dir, exist_ok=True)

  key = jax.random.key(seed)
  t0 = time.time()
  reset_every = 0 if config.whole_sequences else config.tgt_len
  compiled = sampling.sample.lower(model, params, key, num_samples, num_steps,
                                   temperature, reset_every).compile()
  compile_s = time.time() - t0
  t0 = time.time()
  out = jax.block_until_ready(compiled(params, key, temperature))
  run_s = time.time() - t0
  ys = np.asarray(out['y'])  # [T, N, D]
  log_prob = np.asarray(out['log_prob']).sum(0)  # [N]

  np.savez(os.path.join(sample_dir, 'samples.npz'), y=ys, log_prob=log_prob)
  domain = experiments.DATASETS[config.dataset].domain
  files = []
  stats = speech_stats(config) if domain == 'speech' else None
  if domain == 'speech' and stats is None:
    logging.warning('no prepared %s data under %s: writing normalised audio',
                    config.dataset, config.data_dir)
  if domain == 'handwriting':  # one drawing of all samples
    mean, std = data_lib.handwriting_stats(config)
    files.append(os.path.join(sample_dir, 'samples.png'))
    write_handwriting_png(files[-1], list(ys.transpose(1, 0, 2)), mean, std,
                          f'{config.model.name} on {config.dataset}, T={temperature}')
    samples = []
  else:
    samples = data_steps(config, ys)
  if domain == 'array':
    files.append(os.path.join(sample_dir, 'samples_raw.npy'))
    np.save(files[-1], samples)  # [N, T, D] raw values
  for n, sample in enumerate(samples if domain != 'array' else []):
    base = os.path.join(sample_dir, f'sample_{n}')
    if domain == 'speech':
      write_wav(base + '.wav', sample, stats, config.stride)
      files.append(base + '.wav')
    else:
      midi_folder.write_midi(base + '.mid', sample, **midi_grid(config))
      write_piano_roll_png(base + '.png', sample,
                           f'{config.model.name} on {config.dataset}, T={temperature}')
      files += [base + '.mid', base + '.png']
  return dict(sample_dir=sample_dir, files=files, steps_per_s=num_steps / run_s,
              compile_s=compile_s, log_prob=log_prob.tolist())
