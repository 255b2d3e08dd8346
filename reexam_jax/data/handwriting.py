"""Handwriting trajectories as [T, 3] float32 steps (pen, dx, dy).

One convention for every source (see docs/reference.md, "Data pipelines"):
- A trajectory of N pen positions gives N - 1 steps; step k moves from point k to
  point k + 1: (dx, dy) = xy[k + 1] - xy[k], and pen = 1 when point k + 1 ends a
  stroke (the pen leaves the surface after it), else 0. The last step has pen = 1.
  A trajectory of a single point has no step and is left out.
- y points up: both sources record screen coordinates (y down), so y is negated.
- (dx, dy) are normalised by the train split's per-coordinate mean and one scalar std;
  the pen bit is not. Every split uses the train statistics.

Sources:
- IAM-OnDB (the paper's data): one sequence per text line, read from the corpus's
  `lineStrokes/` XML files (`line_points`, `form_files`) and the paper's split lists,
  which ship with this package (`iamondb_splits/`); prepared once as a TFDS dataset
  by `iamondb_builder.load_iamondb`. The std is the authors' fixed 56.04462.
- stroke-3 `.npz` files (the sketch-rnn layout, e.g. Omniglot or QuickDraw):
  `load_stroke3`. The std is the train offsets' own, pooled over dx and dy (one
  scalar, as for IAM-OnDB, so trajectories keep their shape); 56.04462 is a property
  of IAM-OnDB's pen resolution, not of other data.
"""
import os
import re
import xml.etree.ElementTree as ET
from typing import Dict, List, Sequence

import numpy as np

from reexam_jax import errors

# The authors' fixed std of IAM-OnDB offsets, kept "to match previous implementations".
IAMONDB_STD = 56.04462
IAMONDB_SPLITS = ('train', 'valid')  # IAM-OnDB has no test split
STROKE3_SPLITS = ('train', 'valid', 'test')
STROKES_DIR = 'lineStrokes'
# The paper's form-ID lists (1,535 train, 192 valid), as published with the authors'
# code and the VRNN code it follows (Chung et al., 2015).
PACKAGED_LISTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'iamondb_splits')


# ----------------------------------------------------------------------------------
# The shared convention.

def points_to_steps(points: np.ndarray) -> np.ndarray:
  """[N, 3] (pen, x, y) points -> [N - 1, 3] (pen, dx, dy) steps, in points' dtype.

  Step k carries pen[k + 1] and xy[k + 1] - xy[k]; the first point's pen is unused.
  """
  points = np.asarray(points)
  steps = np.empty((max(len(points) - 1, 0), 3), points.dtype)
  steps[:, 0] = points[1:, 0]
  steps[:, 1:] = points[1:, 1:] - points[:-1, 1:]
  return steps


def offset_mean(steps: Sequence[np.ndarray]) -> np.ndarray:
  """Per-coordinate mean [2] (float64) of the (dx, dy) of all steps of all sequences."""
  return _concat(steps)[:, 1:].mean(axis=0)


def pooled_std(steps: Sequence[np.ndarray], mean: np.ndarray) -> float:
  """One std for both coordinates: sqrt of the mean squared (dx, dy) - mean over all
  steps and both coordinates (population std, as np.std)."""
  return float(np.sqrt(np.mean((_concat(steps)[:, 1:] - mean) ** 2)))


def normalise(steps: np.ndarray, mean: np.ndarray, std: float) -> np.ndarray:
  """[T, 3] (pen, dx, dy) -> [T, 3] float32 with (dx, dy) = (d - mean) / std."""
  out = np.asarray(steps, np.float64).copy()
  out[:, 1:] = (out[:, 1:] - mean) / std
  return out.astype(np.float32)


def _concat(seqs: Sequence[np.ndarray]) -> np.ndarray:
  """[sum N_i, 3] float64 rows of all sequences (also when there are none)."""
  return np.concatenate([np.zeros((0, 3)), *seqs]).astype(np.float64)


def _split_like(rows: np.ndarray, lengths: np.ndarray) -> List[np.ndarray]:
  """rows cut into consecutive pieces of `lengths` rows."""
  return np.split(rows, np.cumsum(lengths)[:-1]) if len(lengths) else []


# ----------------------------------------------------------------------------------
# IAM-OnDB files.

def line_points(path: str) -> np.ndarray:
  """One IAM-OnDB line file -> [N, 3] int64 (pen, x, y) points with y negated.

  The file is a `WhiteboardCaptureSession` whose `StrokeSet` holds `Stroke`s of
  `Point x= y= time=`; points are taken stroke after stroke. pen = 1 on the last
  point of each stroke (hence on the final point), 0 elsewhere. Unreadable XML, a
  missing StrokeSet or a non-integer coordinate is a UserError naming the file.
  """
  try:
    root = ET.parse(path).getroot()
  except (ET.ParseError, OSError) as e:
    raise errors.UserError(f'{path}: not a readable IAM-OnDB XML file ({e})') from e
  if root.find('StrokeSet') is None:
    raise errors.UserError(f'{path}: no StrokeSet element (not an IAM-OnDB lineStrokes '
                           f'file; its root is <{root.tag}>)')
  rows = []
  for stroke in root.findall('StrokeSet/Stroke'):
    points = stroke.findall('Point')
    for i, point in enumerate(points):
      try:
        xy = int(point.attrib['x']), -int(point.attrib['y'])
      except (KeyError, ValueError) as e:
        raise errors.UserError(f'{path}: a Point without integer x and y '
                               f'({point.attrib})') from e
      rows.append((int(i == len(points) - 1), *xy))
  return np.array(rows, np.int64).reshape(-1, 3)


def find_strokes_dir(data_dir: str) -> str:
  """The `lineStrokes/` directory: data_dir itself or its `lineStrokes/` child."""
  if os.path.isdir(os.path.join(data_dir, STROKES_DIR)):
    return os.path.join(data_dir, STROKES_DIR)
  if os.path.basename(os.path.normpath(data_dir)) == STROKES_DIR and os.path.isdir(data_dir):
    return data_dir
  raise errors.UserError(f'{data_dir}: no {STROKES_DIR}/ directory; point data_dir at '
                         f'the IAM-OnDB {STROKES_DIR}/ tree or the directory holding it')


def form_dir(strokes_dir: str, form_id: str) -> str:
  """Directory of a form's lines: a01-020w -> <strokes_dir>/a01/a01-020 (a trailing
  letter of the ID is dropped)."""
  sub_dir = form_id[:-1] if form_id[-1].isalpha() else form_id
  return os.path.join(strokes_dir, form_id.split('-')[0], sub_dir)


def form_files(strokes_dir: str, form_id: str) -> List[str]:
  """The line files `<form_id>-<n>.xml` of one form, sorted by n (one per text line);
  a form without any is a UserError naming it."""
  directory = form_dir(strokes_dir, form_id)
  pattern = re.compile(re.escape(form_id) + r'-(\d+)\.xml')
  names = os.listdir(directory) if os.path.isdir(directory) else []
  numbered = sorted((int(m.group(1)), name) for name in names
                    if (m := pattern.fullmatch(name)))
  if not numbered:
    raise errors.UserError(f'form {form_id}: no line files {form_id}-<n>.xml in '
                           f'{directory}')
  return [os.path.join(directory, name) for _, name in numbered]


def read_form_ids(path: str) -> List[str]:
  """Form IDs of a split list, one per line (surrounding spaces stripped)."""
  with open(path) as f:
    ids = [line.strip() for line in f if line.strip()]
  if not ids:
    raise errors.UserError(f'{path}: an empty split list')
  return ids


def split_line_files(strokes_dir: str, list_path: str) -> List[str]:
  """The line files of every form of a split list: forms in list order, each form's
  lines in order; a form with no line file is a UserError naming it."""
  return [path for form_id in read_form_ids(list_path)
          for path in form_files(strokes_dir, form_id)]


def split_lists(strokes_dir: str) -> Dict[str, str]:
  """{split: list file}: `train.txt` and `valid.txt` beside `lineStrokes/` when the
  user put them there (the authors' layout), else the paper's packaged lists."""
  root = os.path.dirname(os.path.abspath(strokes_dir))
  found = {s: os.path.join(root, f'{s}.txt') for s in IAMONDB_SPLITS}
  present = [s for s, path in found.items() if os.path.isfile(path)]
  if not present:
    return {s: os.path.join(PACKAGED_LISTS, f'{s}.txt') for s in IAMONDB_SPLITS}
  if len(present) < len(IAMONDB_SPLITS):
    missing = [found[s] for s in IAMONDB_SPLITS if s not in present]
    raise errors.UserError(f'{found[present[0]]} is there but {missing[0]} is not: put '
                           'both split lists beside lineStrokes/, or neither (to use '
                           "the paper's lists)")
  return found


# ----------------------------------------------------------------------------------
# stroke-3 files.

def stroke3_to_steps(seqs: Sequence[np.ndarray]) -> List[np.ndarray]:
  """[N_i, 3] stroke-3 rows (dx, dy, pen_lifted) -> [N_i - 1, 3] float64 (pen, dx, -dy)
  for each sequence (N_i >= 1).

  Row j is the offset of point j from point j - 1 and pen_lifted = 1 when the pen
  leaves the surface after point j, i.e. point j ends a stroke: the same bit as our
  pen. Row 0 places the first point (at the origin in sketch-rnn files); a trajectory's
  first point has no step, so it is dropped. dy is negated (screen y points down).
  All sequences are converted at once (a data set holds thousands of short ones).
  """
  lengths = np.array([len(seq) for seq in seqs], np.int64)
  rows = _concat(seqs)  # [sum N, 3]
  steps = np.delete(rows, np.cumsum(lengths) - lengths, axis=0)[:, [2, 0, 1]]
  steps[:, 2] *= -1
  return _split_like(steps, lengths - 1)


def stroke3_files(data_dir: str) -> List[str]:
  """data_dir if it is an .npz file, else the .npz files in it, sorted."""
  if os.path.isfile(data_dir):
    return [data_dir]
  if not os.path.isdir(data_dir):
    raise errors.UserError(f'{data_dir}: no such stroke-3 .npz file or directory')
  files = sorted(os.path.join(data_dir, n) for n in os.listdir(data_dir)
                 if n.endswith('.npz'))
  if not files:
    raise errors.UserError(f'{data_dir}: no .npz files (expected stroke-3 files with '
                           f'{list(STROKE3_SPLITS)} arrays)')
  return files


def read_stroke3(path: str) -> Dict[str, List[np.ndarray]]:
  """{split: [N_i, 3] stroke-3 arrays} of one .npz file; anything else is a UserError
  naming the file (and the split and index of a bad sequence)."""
  try:
    with np.load(path, allow_pickle=True, encoding='latin1') as f:
      arrays = {s: f[s] for s in STROKE3_SPLITS if s in f.files}
      found = f.files
  except Exception as e:  # pylint: disable=broad-except; np.load raises many types
    raise errors.UserError(f'{path}: not a readable .npz file ({e})') from e
  if len(arrays) < len(STROKE3_SPLITS):
    raise errors.UserError(f'{path}: expected arrays {list(STROKE3_SPLITS)}, found {found}')
  out = {}
  for split, seqs in arrays.items():
    out[split] = [np.asarray(seq) for seq in seqs]
    for i, seq in enumerate(out[split]):
      if seq.ndim != 2 or seq.shape[1] != 3 or not len(seq):
        raise errors.UserError(f'{path}: {split} sequence {i} has shape {seq.shape}, '
                               'expected [N >= 1, 3] (dx, dy, pen_lifted)')
    if not np.isfinite(_concat(out[split])).all():
      raise errors.UserError(f'{path}: the {split} sequences hold NaN or Inf')
  return out


def load_stroke3(data_dir: str) -> dict:
  """Stroke-3 data from one .npz file or a directory of them (their splits joined in
  file-name order), as normalised steps.

  Returns dict(train, valid, test: lists of [T_i, 3] float32 (pen, dx, dy); mean: [2]
  train offset mean; std: the pooled train offset std; counts: sequences per split;
  files: the files read). A sequence of one point has no step and is dropped.
  """
  files = stroke3_files(data_dir)
  seqs = {s: [] for s in STROKE3_SPLITS}
  for path in files:
    for split, split_seqs in read_stroke3(path).items():
      seqs[split] += split_seqs
  steps = {s: [t for t in stroke3_to_steps(seqs[s]) if len(t)] for s in STROKE3_SPLITS}
  if not steps['train']:
    raise errors.UserError(f'{data_dir}: the stroke-3 data have no train sequence with '
                           'two or more points')
  mean = offset_mean(steps['train'])
  std = pooled_std(steps['train'], mean)
  data = {s: _split_like(normalise(_concat(steps[s]), mean, std),
                         np.array([len(t) for t in steps[s]]))
          for s in STROKE3_SPLITS}
  return dict(**data, mean=mean, std=std, counts={s: len(data[s]) for s in data},
              files=files)
