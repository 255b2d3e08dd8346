"""Any directory of MIDI files as 88-key piano rolls, and piano rolls back to MIDI.

Rolls follow reexam_jax/data/midi.py: binary float32 [T, 88], column i = MIDI pitch
i + 21 (A0 .. C8). Files are read and written with pretty_midi, which keeps a file's
tempo map (seconds <-> ticks) and merges its tracks and channels into instruments.

The time grid is either `fps` frames per second or `steps_per_quarter` frames per
quarter note (exactly one); the beat grid is laid in MIDI ticks, so it follows the
file's tempo changes. On the grid:
  - a note sounds from its onset's nearest frame up to (not including) its release's
    nearest frame, and at least one frame;
  - the roll lasts until the file's last event (notes, tempo, text and other meta
    events), so the silence that write_midi marks after the last note is kept;
  - drum tracks, notes outside the piano range and velocities are dropped;
  - consecutive active frames of a pitch are ONE held note. write_midi writes them so,
    and a note re-struck exactly as the previous one ends reads as held: a roll can
    only show a re-strike with a silent frame in between.
"""
import os
from typing import Dict, List, Optional

from absl import logging
import numpy as np
import pretty_midi

from reexam_jax import errors
from reexam_jax.data import folders
from reexam_jax.data import midi

EXTS = ('.mid', '.midi')
END_TEXT = 'end of roll'  # the text event write_midi puts at the roll's end


def _check_grid(fps: Optional[float], steps_per_quarter: Optional[int]) -> None:
  if (fps is None) == (steps_per_quarter is None):
    raise ValueError('give exactly one of fps (frames per second) and '
                     'steps_per_quarter (frames per quarter note)')
  if fps is not None and not fps > 0:
    raise ValueError(f'fps={fps}: must be > 0')
  if steps_per_quarter is not None and (int(steps_per_quarter) != steps_per_quarter
                                        or steps_per_quarter < 1):
    raise ValueError(f'steps_per_quarter={steps_per_quarter}: must be an integer >= 1')


def _frames(pm: pretty_midi.PrettyMIDI, times: np.ndarray, fps: Optional[float],
            steps_per_quarter: Optional[int]) -> np.ndarray:
  """Times in seconds [N] -> nearest frame indices [N] (halves round up)."""
  if fps is not None:
    position = np.asarray(times, np.float64) * fps
  else:
    ticks = np.array([pm.time_to_tick(t) for t in times], np.float64)
    position = ticks * steps_per_quarter / pm.resolution
  return np.floor(position + 0.5).astype(np.int64)


def midi_to_roll(pm: pretty_midi.PrettyMIDI, fps: Optional[float] = None,
                 steps_per_quarter: Optional[int] = None) -> np.ndarray:
  """A parsed MIDI file -> binary float32 [T, 88] roll on the grid (module docstring)."""
  _check_grid(fps, steps_per_quarter)
  notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes
           if midi.LOWEST_PITCH <= n.pitch < midi.LOWEST_PITCH + midi.NUM_PITCHES]
  starts = _frames(pm, [n.start for n in notes], fps, steps_per_quarter)  # [N]
  stops = np.maximum(starts + 1, _frames(pm, [n.end for n in notes], fps,
                                         steps_per_quarter))  # [N]
  end = _frames(pm, [pm.get_end_time()], fps, steps_per_quarter)[0]
  roll = np.zeros((int(max([end, *stops])), midi.NUM_PITCHES), np.float32)
  for note, start, stop in zip(notes, starts, stops):
    roll[start:stop, note.pitch - midi.LOWEST_PITCH] = 1.0
  return roll


def read_midi(path: str, fps: Optional[float] = None,
              steps_per_quarter: Optional[int] = None) -> np.ndarray:
  """The .mid file at path -> [T, 88] roll. ValueError naming the file when it cannot be
  parsed or holds no note in the piano range."""
  _check_grid(fps, steps_per_quarter)
  try:
    pm = pretty_midi.PrettyMIDI(path)
  except Exception as e:  # pylint: disable=broad-except; mido raises many types
    raise ValueError(f'{path}: not a readable MIDI file ({type(e).__name__}: {e})') from e
  roll = midi_to_roll(pm, fps, steps_per_quarter)
  if not roll.any():
    raise ValueError(f'{path}: no pitched note in the piano range 21..108')
  return roll


def write_midi(path: str, roll: np.ndarray, fps: Optional[float] = None,
               steps_per_quarter: Optional[int] = None, tempo: float = 120.0,
               velocity: int = 80, program: int = 0) -> None:
  """Roll [T, 88] (active where > 0.5) -> a MIDI file that read_midi turns back into
  the same binary roll at the same grid. Each run of consecutive active frames of a
  pitch is one note; a text event marks the roll's end (trailing silence). `tempo`
  (quarter notes per minute) sets the beat grid's speed, and is only notation at a
  frame rate; `program` is the General MIDI instrument (0: piano)."""
  _check_grid(fps, steps_per_quarter)
  roll = np.asarray(roll)
  if roll.ndim != 2 or roll.shape[1] != midi.NUM_PITCHES:
    raise ValueError(f'roll of shape {roll.shape}: expected (T, {midi.NUM_PITCHES})')
  if fps is not None:
    seconds_per_frame, resolution = 1.0 / fps, 960
  else:  # a whole number of ticks per frame, so the beat grid is exact
    seconds_per_frame = 60.0 / (tempo * steps_per_quarter)
    resolution = steps_per_quarter * max(1, 960 // steps_per_quarter)
  pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=tempo)
  piano = pretty_midi.Instrument(program=program)
  active = np.pad(roll > 0.5, ((1, 1), (0, 0))).astype(np.int8)  # [T + 2, 88]
  change = np.diff(active, axis=0)  # [T + 1, 88]: +1 at a note's first frame, -1 after it
  for column in range(midi.NUM_PITCHES):
    onsets = np.flatnonzero(change[:, column] == 1)
    releases = np.flatnonzero(change[:, column] == -1)
    for start, stop in zip(onsets, releases):
      piano.notes.append(pretty_midi.Note(
          velocity=velocity, pitch=column + midi.LOWEST_PITCH,
          start=start * seconds_per_frame, end=stop * seconds_per_frame))
  pm.instruments.append(piano)
  pm.text_events.append(pretty_midi.Text(END_TEXT, len(roll) * seconds_per_frame))
  pm.write(path)


def load_midi_folder(root: str, fps: Optional[float] = None,
                     steps_per_quarter: Optional[int] = None, valid_frac: float = 0.1,
                     test_frac: float = 0.1, seed: int = 1234,
                     list_dir: Optional[str] = None) -> Dict[str, List[np.ndarray]]:
  """{'train', 'valid', 'test'}: [T_i, 88] rolls of the .mid/.midi files under root.

  Split per file (folders.split_keys): by train/valid/test list files in list_dir
  (default root) naming files without extension, else seeded by the sorted names. The
  split is drawn before parsing, so an unreadable file never moves the others. Such
  files are skipped and named in one warning; UserError when none can be read, when no
  MIDI file is found or when a split ends up empty.
  """
  _check_grid(fps, steps_per_quarter)
  if not os.path.isdir(root):
    raise errors.UserError(f'{root}: no such directory')
  paths = folders.find_files(root, EXTS)
  if not paths:
    raise errors.UserError(f'{root}: no MIDI files (*.mid, *.midi) in it or below')
  splits = folders.split_keys(list(paths), list_dir or root, valid_frac, test_frac, seed)
  data: Dict[str, List[np.ndarray]] = {s: [] for s in folders.SPLITS}
  failed: List[str] = []
  for split in folders.SPLITS:
    for key in splits[split]:
      try:
        data[split].append(read_midi(paths[key], fps, steps_per_quarter))
      except ValueError as e:
        failed.append(str(e))
  read = sum(len(data[s]) for s in folders.SPLITS)
  if not read:
    raise errors.UserError(f'{root}: none of its {len(failed)} MIDI files could be read '
                           f'({"; ".join(failed[:3])}{"; ..." if len(failed) > 3 else ""})')
  if failed:
    logging.warning('%s: skipped %d of %d MIDI files: %s', root, len(failed),
                    len(failed) + read, '; '.join(failed))
  folders.check_splits(data, root)
  return data
