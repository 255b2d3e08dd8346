"""A directory of MIDI files as piano rolls (reexam_jax/data/midi_folder.py).

Fixtures are written here: rolls through write_midi, and MIDI files made note by note
with mido (pretty_midi's own reader/writer, so independent of write_midi). The real-data
test writes JSB Chorales rolls ($REEXAM_SHARED_DATA/midi/JSB_Chorales.mat, default
<repo>/../shared/data) as .mid files and reads them back; it skips when absent.
"""
import os

import mido
import numpy as np
import pretty_midi
import pytest

from reexam_jax import errors
from reexam_jax.data import midi, midi_folder, tfds_builders

SHARED = os.environ.get('REEXAM_SHARED_DATA',
                        os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data'))
JSB = os.path.join(SHARED, 'midi', 'JSB_Chorales.mat')
GRIDS = [dict(fps=10), dict(fps=25), dict(fps=31.7), dict(steps_per_quarter=1),
         dict(steps_per_quarter=4), dict(steps_per_quarter=3)]


def random_roll(seed, steps=40):
  """A [steps, 88] roll with leading and trailing silence, and pitch 60 (column 39)
  held for frames 5..7, silent at 8, struck again at 9..10."""
  roll = (np.random.default_rng(seed).random((steps, 88)) < 0.08).astype(np.float32)
  roll[:2] = roll[-3:] = 0
  roll[5:11, 39] = [1, 1, 1, 0, 1, 1]
  return roll


def write_notes(path, notes, tempos=((0, 500000),), ticks_per_beat=480, channel=0):
  """A type-1 MIDI file written with mido: notes = [(pitch, start tick, end tick)],
  tempos = [(tick, microseconds per quarter)]."""
  events = [(tick, 0, mido.MetaMessage('set_tempo', tempo=tempo)) for tick, tempo in tempos]
  for pitch, start, end in notes:
    events.append((start, 2, mido.Message('note_on', note=pitch, velocity=64,
                                          channel=channel)))
    events.append((end, 1, mido.Message('note_off', note=pitch, channel=channel)))
  track, now = mido.MidiTrack(), 0
  for tick, _, message in sorted(events, key=lambda e: e[:2]):  # offs before ons
    track.append(message.copy(time=tick - now))
    now = tick
  mido.MidiFile(ticks_per_beat=ticks_per_beat, tracks=[track]).save(path)


@pytest.mark.parametrize('grid', GRIDS, ids=str)
def test_roundtrip_is_exact(tmp_path, grid):
  roll = random_roll(0)
  path = str(tmp_path / 'a.mid')
  midi_folder.write_midi(path, roll, **grid)
  np.testing.assert_array_equal(midi_folder.read_midi(path, **grid), roll)


def test_roundtrip_at_another_tempo_in_beat_mode(tmp_path):
  roll = random_roll(0)
  path = str(tmp_path / 'a.mid')
  midi_folder.write_midi(path, roll, steps_per_quarter=2, tempo=75)
  np.testing.assert_array_equal(midi_folder.read_midi(path, steps_per_quarter=2), roll)
  # 75 quarters a minute, 2 frames each: 2.5 frames a second.
  np.testing.assert_array_equal(midi_folder.read_midi(path, fps=2.5), roll)


def test_held_frames_are_one_note_and_a_gap_restrikes(tmp_path):
  roll = np.zeros((6, 88), np.float32)
  roll[0:3, 39] = 1  # held over three frames: one note
  roll[4:6, 39] = 1  # after a silent frame: a second note
  path = str(tmp_path / 'a.mid')
  midi_folder.write_midi(path, roll, fps=4)
  notes = pretty_midi.PrettyMIDI(path).instruments[0].notes
  assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0.0, 0.75), (60, 1.0, 1.5)]


def test_restrike_without_gap_reads_as_held(tmp_path):
  path = str(tmp_path / 'a.mid')
  write_notes(path, [(60, 0, 480), (60, 480, 960)])  # two quarter notes, same pitch
  roll = midi_folder.read_midi(path, steps_per_quarter=1)
  assert roll.shape == (2, 88) and roll[:, 39].tolist() == [1, 1] and roll.sum() == 2


def test_beat_grid_follows_tempo_changes(tmp_path):
  """Quarter notes C D E F; 120 bpm for two quarters, then 60 bpm."""
  path = str(tmp_path / 'a.mid')
  write_notes(path, [(60, 0, 480), (62, 480, 960), (64, 960, 1440), (65, 1440, 1920)],
              tempos=[(0, 500000), (960, 1000000)])
  beats = midi_folder.read_midi(path, steps_per_quarter=2)
  assert beats.shape == (8, 88)
  assert [np.flatnonzero(row).tolist() for row in beats] == [
      [39], [39], [41], [41], [43], [43], [44], [44]]
  frames = midi_folder.read_midi(path, fps=2)  # 0.5 s, 0.5 s, then 1 s per quarter
  assert [np.flatnonzero(row).tolist() for row in frames] == [
      [39], [41], [43], [43], [44], [44]]


def test_drums_and_pitches_outside_the_piano_are_dropped(tmp_path):
  pm = pretty_midi.PrettyMIDI()
  piano, drums = pretty_midi.Instrument(0), pretty_midi.Instrument(0, is_drum=True)
  piano.notes = [pretty_midi.Note(64, 20, 0.0, 1.0),   # below A0
                 pretty_midi.Note(64, 21, 0.0, 0.5),   # A0: column 0
                 pretty_midi.Note(64, 108, 0.5, 1.0),  # C8: column 87
                 pretty_midi.Note(64, 109, 0.0, 1.0)]  # above C8
  drums.notes = [pretty_midi.Note(64, 60, 0.0, 1.0)]
  strings = pretty_midi.Instrument(48)
  strings.notes = [pretty_midi.Note(64, 60, 0.0, 0.5)]  # another instrument: merged
  pm.instruments = [piano, drums, strings]
  path = str(tmp_path / 'a.mid')
  pm.write(path)
  roll = midi_folder.read_midi(path, fps=2)
  assert [np.flatnonzero(row).tolist() for row in roll] == [[0, 39], [87]]


def test_notes_shorter_than_a_frame_sound_one_frame(tmp_path):
  path = str(tmp_path / 'a.mid')
  write_notes(path, [(60, 0, 10), (62, 480, 490)])  # 10 ticks of 480 per quarter
  roll = midi_folder.read_midi(path, steps_per_quarter=1)
  assert [np.flatnonzero(row).tolist() for row in roll] == [[39], [41]]


def test_bad_grid_and_roll_arguments(tmp_path):
  path = str(tmp_path / 'a.mid')
  roll = np.zeros((3, 88), np.float32)
  for grid in (dict(), dict(fps=10, steps_per_quarter=4), dict(fps=0),
               dict(steps_per_quarter=1.5)):
    with pytest.raises(ValueError, match='fps|steps_per_quarter'):
      midi_folder.write_midi(path, roll, **grid)
  with pytest.raises(ValueError, match=r'\(3, 87\)'):
    midi_folder.write_midi(path, np.zeros((3, 87)), fps=10)


def make_folder(root, names):
  """Writes random rolls (4 frames per quarter) as root/<name>; returns {name: roll}."""
  rolls = {}
  for i, name in enumerate(names):
    os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    rolls[name] = random_roll(i, steps=12 + i)
    midi_folder.write_midi(os.path.join(root, name), rolls[name], steps_per_quarter=4)
  return rolls


NAMES = [f'piece{i:02d}.mid' for i in range(8)] + ['sub/deeper/x.MIDI', 'sub/y.midi']


def test_folder_split_is_the_seeded_split_of_the_sorted_names(tmp_path):
  rolls = make_folder(str(tmp_path), NAMES)
  data = midi_folder.load_midi_folder(str(tmp_path), steps_per_quarter=4, valid_frac=0.2,
                                      test_frac=0.2, seed=7)
  keys = [os.path.splitext(n)[0] for n in NAMES]
  expected = tfds_builders.ratio_split(keys, 0.2, 0.2, 7)
  by_key = {os.path.splitext(n)[0]: r for n, r in rolls.items()}
  for split in midi.SPLITS:
    assert len(data[split]) == len(expected[split]) == (6 if split == 'train' else 2)
    for got, key in zip(data[split], expected[split]):
      np.testing.assert_array_equal(got, by_key[key])
      assert got.dtype == np.float32
  other = midi_folder.load_midi_folder(str(tmp_path), steps_per_quarter=4, valid_frac=0.2,
                                       test_frac=0.2, seed=8)
  assert any(not np.array_equal(a, b) for a, b in zip(data['train'], other['train']))


def test_folder_split_by_list_files(tmp_path):
  rolls = make_folder(str(tmp_path / 'midi'), NAMES)
  lists = tmp_path / 'lists'
  lists.mkdir()
  (lists / 'train.txt').write_text('piece03\npiece01\nsub/deeper/x\n')
  (lists / 'valid.txt').write_text('y\n')  # a bare name matches when unique
  (lists / 'test_files_list.txt').write_text('piece00\n')
  data = midi_folder.load_midi_folder(str(tmp_path / 'midi'), fps=8, list_dir=str(lists))
  assert len(data['train']) == 3 and len(data['valid']) == len(data['test']) == 1
  # 120 bpm, 4 frames per quarter = 8 frames per second: the same rolls.
  np.testing.assert_array_equal(data['train'][0], rolls['piece03.mid'])
  np.testing.assert_array_equal(data['train'][2], rolls['sub/deeper/x.MIDI'])
  np.testing.assert_array_equal(data['valid'][0], rolls['sub/y.midi'])


def test_list_entries_may_carry_the_extension(tmp_path):
  make_folder(str(tmp_path), NAMES)
  for split, name in (('train', 'piece00.mid'), ('valid', 'piece01.mid'),
                      ('test', 'sub/y.midi')):
    (tmp_path / f'{split}.txt').write_text(name + '\n')
  data = midi_folder.load_midi_folder(str(tmp_path), fps=8)
  assert [len(data[s]) for s in midi.SPLITS] == [1, 1, 1]


def test_unreadable_files_are_skipped_and_named_once(tmp_path, caplog):
  make_folder(str(tmp_path), NAMES)
  (tmp_path / 'broken.mid').write_bytes(b'MThd not really')
  (tmp_path / 'empty.midi').write_bytes(b'')
  write_notes(str(tmp_path / 'drums_only.mid'), [(60, 0, 480)], channel=9)
  with caplog.at_level('WARNING'):
    data = midi_folder.load_midi_folder(str(tmp_path), fps=8, valid_frac=0.2,
                                        test_frac=0.2)
  assert sum(len(data[s]) for s in midi.SPLITS) == len(NAMES)
  lines = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert len(lines) == 1, lines
  assert 'skipped 3 of 13 MIDI files' in lines[0]
  for name in ('broken.mid', 'empty.midi', 'drums_only.mid'):
    assert name in lines[0]


def test_folder_errors(tmp_path):
  with pytest.raises(errors.UserError, match='no such directory'):
    midi_folder.load_midi_folder(str(tmp_path / 'missing'), fps=8)
  (tmp_path / 'notes.txt').write_text('not midi')
  with pytest.raises(errors.UserError, match=r'no MIDI files \(\*\.mid'):
    midi_folder.load_midi_folder(str(tmp_path), fps=8)
  for i in range(3):
    (tmp_path / f'bad{i}.mid').write_bytes(b'garbage')
  with pytest.raises(errors.UserError, match=f'{tmp_path}: none of its 3 MIDI files could '
                     'be read .*bad0.mid'):
    midi_folder.load_midi_folder(str(tmp_path), fps=8)


def test_too_few_files_for_a_split_and_duplicate_names(tmp_path):
  make_folder(str(tmp_path), ['a.mid', 'b.mid', 'c.mid'])
  with pytest.raises(errors.UserError, match='the valid split is empty'):
    midi_folder.load_midi_folder(str(tmp_path), fps=8)  # int(3 * 0.1) = 0
  make_folder(str(tmp_path), ['a.midi'])
  with pytest.raises(errors.UserError, match='a.mid and .*a.midi have the same name'):
    midi_folder.load_midi_folder(str(tmp_path), fps=8, valid_frac=0.4, test_frac=0.4)


@pytest.mark.skipif(not os.path.exists(JSB), reason=f'{JSB} not found (set '
                    'REEXAM_SHARED_DATA)')
def test_jsb_chorales_through_midi_files(tmp_path):
  """JSB rolls (one frame per quarter note) -> .mid -> this reader: the same rolls."""
  rolls = midi.load_mat(JSB)['test'][:12]
  for i, roll in enumerate(rolls):
    midi_folder.write_midi(str(tmp_path / f'chorale{i:02d}.mid'), roll, steps_per_quarter=1)
  data = midi_folder.load_midi_folder(str(tmp_path), steps_per_quarter=1, valid_frac=0.25,
                                      test_frac=0.25, seed=3)
  split = tfds_builders.ratio_split([f'chorale{i:02d}' for i in range(12)], 0.25, 0.25, 3)
  for s in midi.SPLITS:
    for got, key in zip(data[s], split[s]):
      np.testing.assert_array_equal(got, rolls[int(key[-2:])])
  # At a frame rate matching the written tempo (120 bpm: 2 quarters a second).
  again = midi_folder.read_midi(str(tmp_path / 'chorale05.mid'), fps=2)
  np.testing.assert_array_equal(again, rolls[5])
