"""Handwriting data: IAM-OnDB line files and stroke-3 .npz files as (pen, dx, dy) steps.

IAM-OnDB fixtures are written by the tests in the corpus's lineStrokes format
(WhiteboardCaptureSession / WhiteboardDescription / StrokeSet / Stroke / Point). The
real stroke-3 test reads $REEXAM_SHARED_DATA/handwriting/omniglot_stroke3.npz and
skips when REEXAM_SHARED_DATA is unset.
"""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from reexam_jax import errors
from reexam_jax.data import handwriting, iamondb_builder

tfds.disable_progress_bar()

# ------------------------------------------------------------------------ IAM fixtures


def line_xml(strokes) -> str:
  """One lineStrokes file holding `strokes`, lists of (x, y) in screen coordinates."""
  lines = ['<?xml version="1.0" encoding="ISO-8859-1"?>',
           '<WhiteboardCaptureSession>',
           '  <WhiteboardDescription>',
           '    <SensorLocation corner="top_left"/>',
           '    <DiagonallyOppositeCoords x="6512" y="1376"/>',
           '    <VerticallyOppositeCoords x="966" y="1376"/>',
           '    <HorizontallyOppositeCoords x="6512" y="787"/>',
           '  </WhiteboardDescription>',
           '  <StrokeSet>']
  t = 769.05
  for stroke in strokes:
    end = t + 0.02 * (len(stroke) - 1)
    lines.append(f'    <Stroke colour="black" start_time="{t:.2f}" end_time="{end:.2f}">')
    for x, y in stroke:
      lines.append(f'      <Point x="{x}" y="{y}" time="{t:.2f}"/>')
      t += 0.02
    lines.append('    </Stroke>')
  lines += ['  </StrokeSet>', '</WhiteboardCaptureSession>']
  return '\n'.join(lines) + '\n'


# Two strokes, 5 points: steps computed by hand in test_line_points_and_steps_by_hand.
LINE = [[(10, 100), (12, 103), (15, 101)], [(30, 90), (31, 95)]]


def random_line(rng):
  return [[tuple(p) for p in rng.integers(0, 2000, (rng.integers(2, 6), 2))]
          for _ in range(rng.integers(1, 4))]


def write_line(root, form_id, number, strokes):
  directory = handwriting.form_dir(str(root / 'lineStrokes'), form_id)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f'{form_id}-{number}.xml')
  with open(path, 'w', encoding='latin-1') as f:
    f.write(line_xml(strokes))
  return path


# form ID -> line numbers; a01-020w's lines 9 and 10 sort numerically, not as text.
FORMS = {'train': {'a01-020w': (1, 9, 10), 'b02-100': (1, 2)},
         'valid': {'c03-001x': (1, 2, 3)}}


def make_corpus(root, seed=0):
  """A small corpus in root (lineStrokes/ plus train.txt and valid.txt, one ID a line
  with a leading space as the authors' lists); returns {split: [line strokes]}."""
  rng = np.random.default_rng(seed)
  lines = {}
  for split, forms in FORMS.items():
    lines[split] = []
    for form_id, numbers in forms.items():
      for n in numbers:
        strokes = LINE if (form_id, n) == ('a01-020w', 10) else random_line(rng)
        write_line(root, form_id, n, strokes)
        lines[split].append(strokes)
    with open(root / f'{split}.txt', 'w') as f:
      f.write(''.join(f' {form_id}\n' for form_id in forms))
  # Another form in a01-020w's directory: its lines must not be taken for a01-020w.
  write_line(root, 'a01-020x', 1, LINE)
  return lines


def expected_steps(strokes) -> np.ndarray:
  """Steps of one line from its strokes, without the module's code."""
  points, pens = [], []
  for stroke in strokes:
    points += [(x, -y) for x, y in stroke]
    pens += [0] * (len(stroke) - 1) + [1]
  points = np.array(points, np.float64)
  return np.column_stack([pens[1:], np.diff(points, axis=0)])


def prepared_datasets(directory):
  """Every dataset_info.json under directory (a prepared TFDS dataset has one)."""
  return [os.path.join(d, n) for d, _, names in os.walk(directory)
          for n in names if n == 'dataset_info.json']


# ------------------------------------------------------------------------ IAM-OnDB


def test_line_points_and_steps_by_hand(tmp_path):
  path = write_line(tmp_path, 'a01-020w', 1, LINE)
  points = handwriting.line_points(path)
  np.testing.assert_array_equal(points, [[0, 10, -100], [0, 12, -103], [1, 15, -101],
                                         [0, 30, -90], [1, 31, -95]])
  np.testing.assert_array_equal(handwriting.points_to_steps(points),
                                [[0, 2, -3], [1, 3, 2], [0, 15, 11], [1, 1, -5]])
  # A one-point stroke ends where it starts; a one-point line has no step.
  path = write_line(tmp_path, 'a01-020w', 2, [[(5, 5)], [(6, 7), (8, 8)]])
  np.testing.assert_array_equal(handwriting.points_to_steps(handwriting.line_points(path)),
                                [[0, 1, -2], [1, 2, -1]])
  assert handwriting.points_to_steps(np.zeros((1, 3), np.int64)).shape == (0, 3)


def test_form_directories_and_line_order(tmp_path):
  make_corpus(tmp_path)
  strokes = str(tmp_path / 'lineStrokes')
  assert handwriting.form_dir(strokes, 'a01-020w') == os.path.join(strokes, 'a01', 'a01-020')
  assert handwriting.form_dir(strokes, 'b02-100') == os.path.join(strokes, 'b02', 'b02-100')
  names = [os.path.basename(p) for p in handwriting.form_files(strokes, 'a01-020w')]
  assert names == ['a01-020w-1.xml', 'a01-020w-9.xml', 'a01-020w-10.xml']
  assert [os.path.basename(p) for p in handwriting.form_files(strokes, 'a01-020x')] == [
      'a01-020x-1.xml']
  with pytest.raises(errors.UserError, match='form a01-020y: no line files'):
    handwriting.form_files(strokes, 'a01-020y')


def test_strokes_dir_given_directly_or_its_parent(tmp_path):
  (tmp_path / 'lineStrokes').mkdir()
  expected = str(tmp_path / 'lineStrokes')
  assert handwriting.find_strokes_dir(str(tmp_path)) == expected
  assert handwriting.find_strokes_dir(expected) == expected
  with pytest.raises(errors.UserError, match='no lineStrokes/ directory'):
    handwriting.find_strokes_dir(str(tmp_path / 'lineStrokes' / 'a01'))


def test_load_iamondb_steps_and_normalisation(tmp_path):
  lines = make_corpus(tmp_path)
  write_line(tmp_path, 'b02-100', 3, [[(5, 5)]])  # one point, no step: dropped
  data = iamondb_builder.load_iamondb(str(tmp_path))
  raw = {s: [expected_steps(strokes) for strokes in lines[s]] for s in lines}
  mean = np.concatenate(raw['train'])[:, 1:].mean(axis=0)
  np.testing.assert_allclose(data['mean'], mean, rtol=1e-12)
  assert data['std'] == handwriting.IAMONDB_STD == 56.04462
  assert 'test' not in data
  assert data['counts'] == {'train': 5, 'valid': 3}
  assert data['ids']['train'] == ['a01-020w-1', 'a01-020w-9', 'a01-020w-10',
                                  'b02-100-1', 'b02-100-2']
  assert data['ids']['valid'] == ['c03-001x-1', 'c03-001x-2', 'c03-001x-3']
  assert data['metadata']['dropped_lines'] == {'train': 1, 'valid': 0}
  for split in ('train', 'valid'):  # valid is normalised with the train mean
    for got, want in zip(data[split], raw[split]):
      assert got.dtype == np.float32 and got.shape == want.shape
      np.testing.assert_array_equal(got[:, 0], want[:, 0])  # the pen is not normalised
      np.testing.assert_allclose(got[:, 1:], (want[:, 1:] - mean) / 56.04462, rtol=1e-6)
  np.testing.assert_allclose(data['train'][2][:, 1:] * 56.04462 + mean,
                             [[2, -3], [3, 2], [15, 11], [1, -5]], atol=1e-4)
  # Non-paper lists beside lineStrokes/ name the config; lineStrokes/ given directly
  # reads the same prepared copy (next to lineStrokes/).
  assert os.path.basename(os.path.dirname(data['path'])).startswith('lists_')
  assert data['path'].startswith(str(tmp_path / 'iamondb'))
  again = iamondb_builder.load_iamondb(str(tmp_path / 'lineStrokes'))
  assert again['path'] == data['path'] and again['ids'] == data['ids']
  assert len(prepared_datasets(tmp_path)) == 1


def test_bad_corpus_fails_naming_it_and_prepares_nothing(tmp_path):
  make_corpus(tmp_path)
  bad = write_line(tmp_path, 'c03-001x', 2, LINE)
  with open(bad, 'a') as f:
    f.write('<Stroke>')  # junk after the root element
  with pytest.raises(errors.UserError, match='c03-001x-2.xml'):
    iamondb_builder.load_iamondb(str(tmp_path))
  assert not prepared_datasets(tmp_path) and not os.path.exists(tmp_path / 'iamondb')

  write_line(tmp_path, 'c03-001x', 2, LINE)
  with open(tmp_path / 'valid.txt', 'a') as f:
    f.write(' d04-555\n')  # listed, but no file of it
  with pytest.raises(errors.UserError, match='form d04-555'):
    iamondb_builder.load_iamondb(str(tmp_path))
  assert not prepared_datasets(tmp_path) and not os.path.exists(tmp_path / 'iamondb')

  (tmp_path / 'valid.txt').unlink()
  with pytest.raises(errors.UserError, match='valid.txt is not'):
    iamondb_builder.load_iamondb(str(tmp_path))


def test_line_file_errors_name_the_file(tmp_path):
  path = tmp_path / 'a.xml'
  path.write_text('<WhiteboardCaptureSession><StrokeSet><Stroke><Point x="1"/></Stroke>'
                  '</StrokeSet></WhiteboardCaptureSession>')
  with pytest.raises(errors.UserError, match='a.xml: a Point without integer x and y'):
    handwriting.line_points(str(path))
  path.write_text('<WhiteboardCaptureSession/>')
  with pytest.raises(errors.UserError, match='a.xml: no StrokeSet'):
    handwriting.line_points(str(path))


def test_packaged_split_lists(tmp_path):
  (tmp_path / 'lineStrokes').mkdir()
  lists = handwriting.split_lists(str(tmp_path / 'lineStrokes'))
  assert lists == {s: os.path.join(handwriting.PACKAGED_LISTS, f'{s}.txt')
                   for s in ('train', 'valid')}
  ids = {s: handwriting.read_form_ids(lists[s]) for s in lists}
  assert len(ids['train']) == len(set(ids['train'])) == 1535
  assert len(ids['valid']) == len(set(ids['valid'])) == 192
  assert not set(ids['train']) & set(ids['valid'])
  assert ids['train'][:2] == ['a01-020x', 'd04-081'] and ids['valid'][0] == 'a02-050'
  assert iamondb_builder.make_config(lists).name == iamondb_builder.PAPER_CONFIG


# ------------------------------------------------------------------------ stroke-3


def write_npz(path, splits):
  np.savez(path, **{s: np.array(seqs + [None], dtype=object)[:-1]
                    for s, seqs in splits.items()})


def test_stroke3_matches_the_iamondb_convention(tmp_path):
  # LINE as stroke-3 rows: screen offsets from the previous point (row 0: from the
  # origin) and pen_lifted after the last point of each stroke.
  points = np.array([p for stroke in LINE for p in stroke])  # [5, 2] screen (x, y)
  rows = np.column_stack([np.diff(points, axis=0, prepend=[[0, 0]]), [0, 0, 1, 0, 1]])
  line = handwriting.points_to_steps(
      handwriting.line_points(write_line(tmp_path, 'a01-020w', 1, LINE)))
  np.testing.assert_array_equal(handwriting.stroke3_to_steps([rows])[0], line)


def test_load_stroke3_normalisation_and_files(tmp_path):
  rng = np.random.default_rng(0)

  def seqs(n):
    out = []
    for _ in range(n):
      seq = np.zeros((rng.integers(2, 9), 3), np.int16)  # [N, 3] (dx, dy, pen_lifted)
      seq[1:, :2] = rng.integers(-50, 60, (len(seq) - 1, 2))
      seq[:, 2] = rng.integers(0, 2, len(seq))
      seq[-1, 2] = 1
      out.append(seq)
    return out

  files = {'a.npz': {s: seqs(n) for s, n in (('train', 6), ('valid', 2), ('test', 3))},
           'b.npz': {s: seqs(n) for s, n in (('train', 4), ('valid', 1), ('test', 2))}}
  for name, splits in files.items():
    write_npz(tmp_path / name, splits)
  data = handwriting.load_stroke3(str(tmp_path))
  assert data['counts'] == {'train': 10, 'valid': 3, 'test': 5}
  assert [os.path.basename(f) for f in data['files']] == ['a.npz', 'b.npz']
  raw = {s: files['a.npz'][s] + files['b.npz'][s] for s in data['counts']}
  offsets = np.concatenate([r[1:, :2] * [1, -1] for r in raw['train']]).astype(np.float64)
  np.testing.assert_allclose(data['mean'], offsets.mean(axis=0), rtol=1e-12)
  assert data['std'] == pytest.approx(np.std(offsets - offsets.mean(axis=0)), rel=1e-12)
  for split in data['counts']:
    for got, rows in zip(data[split], raw[split]):
      assert got.dtype == np.float32 and got.shape == (len(rows) - 1, 3)
      np.testing.assert_array_equal(got[:, 0], rows[1:, 2])
      np.testing.assert_allclose(got[:, 1:] * data['std'] + data['mean'],
                                 rows[1:, :2] * [1, -1], atol=1e-4)
  one = handwriting.load_stroke3(str(tmp_path / 'a.npz'))
  assert one['counts'] == {'train': 6, 'valid': 2, 'test': 3}


def test_stroke3_errors_name_the_file(tmp_path):
  np.savez(tmp_path / 'x.npz', train=np.zeros(2), valid=np.zeros(2))
  with pytest.raises(errors.UserError, match=r"x.npz: expected arrays \['train', 'valid', "
                     r"'test'\]"):
    handwriting.load_stroke3(str(tmp_path / 'x.npz'))
  write_npz(tmp_path / 'x.npz', {'train': [np.zeros((3, 2))], 'valid': [], 'test': []})
  with pytest.raises(errors.UserError, match=r'x.npz: train sequence 0 has shape \(3, 2\)'):
    handwriting.load_stroke3(str(tmp_path / 'x.npz'))
  write_npz(tmp_path / 'x.npz', {'train': [np.zeros((2, 3))],
                                 'valid': [np.full((2, 3), np.nan)], 'test': []})
  with pytest.raises(errors.UserError, match='x.npz: the valid sequences hold NaN'):
    handwriting.load_stroke3(str(tmp_path / 'x.npz'))
  (tmp_path / 'x.npz').unlink()
  with pytest.raises(errors.UserError, match='no .npz files'):
    handwriting.load_stroke3(str(tmp_path))


@pytest.mark.skipif(not os.environ.get('REEXAM_SHARED_DATA'),
                    reason='REEXAM_SHARED_DATA is not set')
def test_real_omniglot_stroke3():
  path = os.path.join(os.environ['REEXAM_SHARED_DATA'], 'handwriting',
                      'omniglot_stroke3.npz')
  data = handwriting.load_stroke3(path)
  assert data['counts'] == {'train': 30000, 'valid': 1000, 'test': 1000}
  with np.load(path, allow_pickle=True, encoding='latin1') as f:
    raw = {s: list(f[s]) for s in data['counts']}
  assert 50 < data['std'] < 56  # pooled over dx and dy, around each one's mean
  for split in data['counts']:
    got = np.concatenate(data[split])  # [sum T, 3]
    want = np.concatenate([r[1:] for r in raw[split]])  # [sum T, 3] (dx, dy, pen_lifted)
    np.testing.assert_array_equal(got[:, 0], want[:, 2])
    np.testing.assert_allclose(got[:, 1:] * data['std'] + data['mean'],
                               want[:, :2] * [1, -1], atol=1e-3)
    assert all(steps[-1, 0] == 1 for steps in data[split])
    for steps, rows in list(zip(data[split], raw[split]))[::50]:
      # Cumulative steps retrace the pen (y up) from the first point.
      xy = np.cumsum(rows[:, :2].astype(np.float64), axis=0) * [1, -1]  # [N, 2]
      retraced = xy[0] + np.cumsum(steps[:, 1:] * data['std'] + data['mean'], axis=0)
      np.testing.assert_allclose(retraced, xy[1:], atol=0.05)


# ------------------------------------------------------------------------ dispatch


def test_load_dataset_dispatches_handwriting(tmp_path):
  """--config.data_dir: IAM-OnDB's lineStrokes/ or its parent ('test' is the
  validation split); stroke-3: one .npz file or a directory of them."""
  from reexam_jax import experiments  # pylint: disable=g-import-not-at-top
  from reexam_jax.data import load_dataset  # pylint: disable=g-import-not-at-top
  make_corpus(tmp_path / 'iam')
  for data_dir in (tmp_path / 'iam', tmp_path / 'iam' / 'lineStrokes'):
    config = experiments.get_config('iamondb', 'f_rnn', f'data_dir={data_dir}')
    data = load_dataset(config)
    assert [len(data[s]) for s in ('train', 'valid', 'test')] == [5, 3, 3]
    assert data['test'] is data['valid']
  splits = {'train': [np.array([[0, 0, 0], [3, 4, 0], [1, -2, 1]])] * 3,
            'valid': [np.array([[0, 0, 0], [2, 2, 1]])] * 2,
            'test': [np.array([[0, 0, 0], [1, 1, 0], [5, 5, 1]])]}
  os.makedirs(tmp_path / 'npz')
  write_npz(tmp_path / 'npz' / 'a.npz', splits)
  for data_dir in (tmp_path / 'npz' / 'a.npz', tmp_path / 'npz'):
    data = load_dataset(experiments.get_config('stroke3', 'f_rnn', f'data_dir={data_dir}'))
    assert [len(data[s]) for s in ('train', 'valid', 'test')] == [3, 2, 1]
    assert data['train'][0].shape == (2, 3)
  with pytest.raises(errors.UserError, match='no such'):
    load_dataset(experiments.get_config('stroke3', 'f_rnn',
                                        f'data_dir={tmp_path / "missing.npz"}'))
