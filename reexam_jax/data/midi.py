"""Polyphonic music as [T, 88] piano rolls (docs/reference.md, "Data pipelines").

Reads the Boulanger-Lewandowski sets in either published form: the pickles (a dict of
train/valid/test lists of sequences of lists of active MIDI pitches) or the `.mat`
files (`traindata`/`validdata`/`testdata` object arrays of [T, 88] 0/1 rolls). Column i
of a roll is MIDI pitch i + 21 (A0 .. C8).
"""
import io
import os
import pickle
import urllib.request
from typing import Dict, List

import numpy as np
import scipy.io

from reexam_jax import errors
from reexam_jax import fileio
from reexam_jax.data import splits

NUM_PITCHES = 88
LOWEST_PITCH = 21
SPLITS = ('train', 'valid', 'test')
_BASE_URL = 'http://www-etud.iro.umontreal.ca/~boulanni/'

# dataset -> file stems accepted in data_dir (the first is the download name).
FILE_STEMS = {
    'nottingham': ('Nottingham',),
    'muse': ('MuseData',),
    'jsb': ('JSB Chorales', 'JSB_Chorales'),
    'piano_midi': ('Piano-midi.de', 'Piano_midi'),
}


def pitches_to_roll(steps) -> np.ndarray:
  """A sequence of lists of active MIDI pitches -> [T, 88] float32 roll."""
  roll = np.zeros((len(steps), NUM_PITCHES), np.float32)
  for t, pitches in enumerate(steps):
    for p in pitches:
      if not LOWEST_PITCH <= p < LOWEST_PITCH + NUM_PITCHES:
        raise ValueError(f'pitch {p} at step {t} is outside the piano range 21..108')
      roll[t, int(p) - LOWEST_PITCH] = 1.0
  return roll


def _rolls(path: str, split: str, seqs, to_roll) -> List[np.ndarray]:
  """[to_roll(seq) for seq in seqs]; a sequence it cannot convert (TypeError,
  ValueError) is a UserError naming the file, the split and the index."""
  rolls = []
  for i, seq in enumerate(seqs):
    try:
      rolls.append(to_roll(seq))
    except (TypeError, ValueError) as e:
      raise errors.UserError(f'{path}: {split} sequence {i}: {e}') from e
  return rolls


def load_pickle(path: str) -> Dict[str, List[np.ndarray]]:
  try:
    with open(path, 'rb') as f:
      data = pickle.load(f, encoding='latin1')
  except Exception as e:  # pylint: disable=broad-except; unpickling garbage raises anything
    raise errors.UserError(f'{path}: not a readable pickle ({type(e).__name__}: {e})') from e
  if not isinstance(data, dict) or any(s not in data for s in SPLITS):
    raise errors.UserError(f'{path}: expected a dict with keys {SPLITS}')
  return {s: _rolls(path, s, data[s], pitches_to_roll) for s in SPLITS}


def _mat_roll(roll) -> np.ndarray:
  """One roll of a .mat file as [T, 88] float32; ValueError unless it is one, finite."""
  roll = np.asarray(roll, np.float32)
  if roll.ndim != 2 or roll.shape[1] != NUM_PITCHES:
    raise ValueError(f'shape {roll.shape}, expected (T, {NUM_PITCHES})')
  if not np.isfinite(roll).all():
    raise ValueError('holds NaN or Inf')
  return roll


def load_mat(path: str) -> Dict[str, List[np.ndarray]]:
  try:
    data = scipy.io.loadmat(path)
  except Exception as e:  # pylint: disable=broad-except; scipy raises many types
    raise errors.UserError(f'{path}: not a readable .mat file ({e})') from e
  out = {}
  for split in SPLITS:
    key = f'{split}data'
    if key not in data:
      raise errors.UserError(f'{path}: expected field {key!r} (found '
                             f'{sorted(k for k in data if not k.startswith("__"))})')
    out[split] = _rolls(path, key, data[key].reshape(-1), _mat_roll)
  return out


def _download(url: str, dest: str) -> None:
  """Downloads url to dest, written atomically: never a partial file at dest."""
  with urllib.request.urlopen(url, timeout=30) as resp:
    data = resp.read()
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  fileio.write_bytes(dest, data)


def load_midi(dataset: str, data_dir: str, download: bool = True
              ) -> Dict[str, List[np.ndarray]]:
  """Rolls of `dataset` from `data_dir` ({stem}.mat or {stem}.pickle), downloading the
  pickle from its canonical URL when absent and `download` is set."""
  if dataset not in FILE_STEMS:
    raise ValueError(f'unknown MIDI dataset {dataset!r}; choose one of {sorted(FILE_STEMS)}')
  stems = FILE_STEMS[dataset]
  for stem in stems:
    for ext, loader in (('.mat', load_mat), ('.pickle', load_pickle), ('.pkl', load_pickle)):
      path = os.path.join(data_dir, stem + ext)
      if os.path.exists(path):
        return loader(path)
  wanted = ' or '.join(f'{s}.pickle / {s}.mat' for s in stems)
  url = _BASE_URL + stems[0] + '.pickle'
  if download:
    dest = os.path.join(data_dir, stems[0] + '.pickle')
    try:
      _download(url, dest)
      return load_pickle(dest)
    except OSError as e:
      raise errors.UserError(
          f'{dataset}: no {wanted} in {data_dir!r}, and downloading {url} failed ({e}). '
          f'Put the file there, or point --config.data_dir at a directory holding it.'
      ) from e
  raise errors.UserError(f'{dataset}: no {wanted} in {data_dir!r}. Put the file there '
                          f'(it is published at {url}), or set --config.data_dir.')


def score_to_roll(score, steps_per_quarter: int = 1) -> np.ndarray:
  """A music21 score -> [T, 88] roll sampled `steps_per_quarter` times per quarter note
  (quarter notes, as the JSB Chorales set of the paper's companion benchmarks)."""
  num_steps = int(np.ceil(float(score.highestTime) * steps_per_quarter))
  roll = np.zeros((num_steps, NUM_PITCHES), np.float32)
  for note in score.flatten().notes:
    start = int(round(float(note.offset) * steps_per_quarter))
    stop = max(start + 1, int(round(float(note.offset + note.quarterLength)
                                     * steps_per_quarter)))
    for pitch in note.pitches:
      if LOWEST_PITCH <= pitch.midi < LOWEST_PITCH + NUM_PITCHES:
        roll[start:stop, pitch.midi - LOWEST_PITCH] = 1.0
  return roll


def load_bach_chorales(cache_dir: str, max_pieces: int = 0, seed: int = 0
                       ) -> Dict[str, List[np.ndarray]]:
  """The Bach chorales bundled with music21 as piano rolls, split 80/10/10 by piece.

  Works offline: the scores ship inside the music21 package. The rolls are cached in
  `cache_dir` (written atomically) because parsing takes a minute.
  """
  import music21  # a heavy import; only the quickstart needs it

  cache = os.path.join(cache_dir, f'bach_music21_{max_pieces or "all"}_{seed}.npz')
  if os.path.exists(cache):
    with np.load(cache, allow_pickle=True) as f:
      return {s: list(f[s]) for s in SPLITS}
  paths = sorted(str(p) for p in music21.corpus.getComposer('bach'))
  paths = [p for p in paths if p.endswith(('.mxl', '.xml', '.krn'))]
  if max_pieces:
    paths = paths[:max_pieces]
  rolls = [r for r in (score_to_roll(music21.corpus.parse(p)) for p in paths) if len(r) > 1]
  # Drawn with numpy's generator (the speech splits use random.Random), as ever: a
  # seed's split never changes.
  order = np.random.default_rng(seed).permutation(len(rolls))
  n_held_out = max(1, len(rolls) // 10)  # pieces in valid, and in test
  data = {s: [rolls[i] for i in idx]
          for s, idx in splits.cut(order, n_held_out, n_held_out).items()}
  npz = io.BytesIO()
  np.savez(npz, **{s: np.array(v + [None], dtype=object)[:-1] for s, v in data.items()})
  os.makedirs(cache_dir, exist_ok=True)
  fileio.write_bytes(cache, npz.getvalue())
  return data
