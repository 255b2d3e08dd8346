"""Datasets by name: `load_dataset(config)` -> {'train', 'valid', 'test'}: lists of
numpy sequences, each [T_i, ...] whose row-major flattening is the element stream, or,
for the file datasets streamed from disk (VCTK, Blizzard), lazy splits
(`speech.SpeechSplit`) that `batching.make_train_stream` and `batching.eval_chunks`
read piece by piece. Speech results also carry 'sort_eval' (evaluation batch order).

A user's own data (wav_folder, midi_folder, array_folder; docs/own_data.md) are read
from --config.data_dir, which they require; `read_files` reads new files of such a
dataset as its sequences, with the training normalisation (for `--mode=score` and the
Python API), and `fit_config` fits an array_folder model to its data's D and kind."""
import copy
import hashlib
import os
import re
from typing import Any, Dict, List, Tuple

import numpy as np

from reexam_jax import errors
from reexam_jax import experiments
from reexam_jax.data import array_folder
from reexam_jax.data import batching
from reexam_jax.data import folders
from reexam_jax.data import midi
from reexam_jax.data import midi_folder

MIDI_DATASETS = tuple(midi.FILE_STEMS)
SPEECH_DATASETS = tuple(n for n, d in experiments.DATASETS.items() if d.domain == 'speech')


def load_dataset(config) -> Dict[str, List[np.ndarray]]:
  """Loads config.dataset from config.data_dir (see each domain's module).

  Speech: the raw corpus is read from data_dir and prepared as a TFDS dataset in
  prepared_dir (default data_dir); `stream_from_disk` returns lazy splits.
  Data a run cannot use raise errors.UserError naming the directory or file: a missing
  data_dir other than the default (which is created to download or cache into), a
  file that is not what its loader expects, an empty split, a d_data that does not
  divide the elements of a step.
  """
  check_data_dir(config)
  data = _load(config)
  for split in midi.SPLITS:
    if not len(data[split]):  # pylint: disable=g-explicit-length-test; lazy splits too
      raise errors.UserError(f'--config.data_dir={config.data_dir}: the {config.dataset} '
                             f'data have no {split} sequences')
  _check_d_data(data['train'], config.model.d_data, config.dataset)
  print(f'data: {config.dataset} from {config.data_dir}: '
        + '/'.join(str(len(data[s])) for s in midi.SPLITS) + ' train/valid/test sequences',
        flush=True)
  return data


def check_data_dir(config) -> None:
  """UserError unless config.data_dir exists (a missing default directory is made to
  download or cache into, except for own data, which have none; array_folder and
  stroke3 also take a single .npy/.npz file)."""
  if config.dataset in experiments.OWN_DATA_FIELDS and not config.data_dir:
    raise errors.UserError(f'--config.data_dir is required for {config.dataset}: the '
                           'directory of your files (docs/own_data.md)')
  if config.dataset in ('array_folder', 'stroke3') and os.path.isfile(config.data_dir):
    return  # a single .npy/.npz file
  if (not os.path.isdir(config.data_dir)
      and config.data_dir != experiments.default_data_dir(config.dataset)):
    raise errors.UserError(f'--config.data_dir={config.data_dir}: no such directory')


def midi_grid(config) -> Dict[str, float]:
  """midi_folder's time grid as read_midi/write_midi keywords: fps, else
  steps_per_quarter."""
  if config.fps:
    return dict(fps=config.fps)
  return dict(steps_per_quarter=config.steps_per_quarter)


def load_arrays(config) -> Tuple[Dict[str, List[np.ndarray]], array_folder.ArrayStats]:
  """array_folder's splits as the model sees them, and how they were standardised."""
  return array_folder.load_array_folder(
      config.data_dir, kind=config.kind, valid_frac=config.valid_frac,
      test_frac=config.test_frac, seed=config.seed)


def fit_config(config):
  """config, or for array_folder with fit_model_to_data a copy whose model.d_data is
  the data's D (flat models, d_data 1, keep 1) and model.head 'bernoulli' for binary
  data, else 'gmm'. Reads the data (the command line does so before any check of the
  workdir, so a workdir's config.json records the fitted model)."""
  if config.dataset != 'array_folder' or not config.fit_model_to_data:
    return config
  check_data_dir(config)
  _, stats = load_arrays(config)
  fitted = copy.deepcopy(config)
  if fitted.model.d_data != 1:
    fitted.model.d_data = stats.dim
  fitted.model.head = 'bernoulli' if stats.kind == 'binary' else 'gmm'
  return fitted


def _load(config) -> Dict[str, List[np.ndarray]]:
  if config.dataset == 'midi_folder':
    return midi_folder.load_midi_folder(
        config.data_dir, **midi_grid(config), valid_frac=config.valid_frac,
        test_frac=config.test_frac, seed=config.seed)
  if config.dataset == 'array_folder':
    data, stats = load_arrays(config)
    if stats.kind == 'real' and config.model.head == 'bernoulli':
      raise errors.UserError(f'--config.model.head=bernoulli: the data at '
                             f'{config.data_dir} are real-valued, not 0/1 (use gmm)')
    return data
  if config.dataset in MIDI_DATASETS:
    return midi.load_midi(config.dataset, config.data_dir)
  if config.dataset == 'bach_music21':
    return midi.load_bach_chorales(config.data_dir, config.max_pieces)
  if config.dataset in SPEECH_DATASETS:
    from reexam_jax.data import speech  # pylint: disable=g-import-not-at-top
    dataset, prepared_dir, kwargs = _speech_args(config)
    if config.stream_from_disk:
      return speech.open_speech(dataset, prepared_dir, **kwargs).as_dict()
    return speech.load_speech(dataset, prepared_dir, **kwargs)
  if config.dataset in HANDWRITING_DATASETS:
    return _load_handwriting(config)
  raise errors.UserError(f'--config.dataset={config.dataset}: unknown dataset')


HANDWRITING_DATASETS = ('iamondb', 'stroke3')


def _read_handwriting(config) -> dict:
  """The handwriting loader's result (splits of (pen, dx, dy) steps, mean, std): IAM-OnDB
  from its lineStrokes/ tree (data_dir is that tree or the directory holding it; a
  prepared copy is read, not rebuilt), stroke-3 from an .npz file or a directory of
  them."""
  from reexam_jax.data import handwriting  # pylint: disable=g-import-not-at-top
  if config.dataset == 'stroke3':
    return handwriting.load_stroke3(config.data_dir)
  from reexam_jax.data import iamondb_builder  # pylint: disable=g-import-not-at-top
  return iamondb_builder.load_iamondb(config.data_dir, config.prepared_dir)


def _load_handwriting(config) -> Dict[str, List[np.ndarray]]:
  """Train, valid and test steps. IAM-OnDB has no test split: its 'test' is the
  validation split, as the paper reports validation LL (evaluate.test_split labels
  the results)."""
  data = _read_handwriting(config)
  return dict(train=data['train'], valid=data['valid'],
              test=data['valid'] if config.dataset == 'iamondb' else data['test'])


def handwriting_stats(config):
  """(mean [2], std) of config's handwriting offsets, to draw steps in the data's own
  units."""
  data = _read_handwriting(config)
  return data['mean'], data['std']


def _check_d_data(seqs, d_data: int, dataset: str) -> None:
  """A step of d_data elements must not straddle the data's own steps: d_data divides
  the elements per step of [T, ...] sequences (88 for piano rolls); 1-D sequences
  (audio) are cut into frames of any size."""
  if batching.is_lazy(seqs) or np.ndim(seqs[0]) < 2:
    return
  per_step = int(np.prod(np.shape(seqs[0])[1:]))
  if per_step % d_data:
    raise errors.UserError(f'--config.model.d_data={d_data}: does not divide the '
                           f'{per_step} elements per step of the {dataset} data')


def _speech_args(config):
  """(builder name, prepared dir, keyword arguments) of config's speech dataset."""
  dataset = 'wav_folder' if config.dataset == 'fsdd' else config.dataset
  kwargs = dict(manual_dir=config.data_dir, stride=config.stride,
                stride_mode=config.stride_mode, max_files=config.max_files or None)
  return dataset, prepared_dir(config), kwargs


def prepared_dir(config) -> str:
  """Where config's speech dataset is prepared: config.prepared_dir, else data_dir;
  wav_folder's own cache, named after its data (basename and a digest of the absolute
  path), so that no two folders share one and the user's folder stays as it is."""
  if config.prepared_dir or config.dataset != 'wav_folder':
    return config.prepared_dir or config.data_dir
  source = os.path.abspath(config.data_dir)
  slug = re.sub(r'[^A-Za-z0-9]+', '_', os.path.basename(source)).strip('_') or 'root'
  digest = hashlib.sha1(source.encode()).hexdigest()[:8]
  return os.path.join(experiments.default_data_dir('prepared'), f'{slug}_{digest}')


def open_speech_dataset(config):
  """config's prepared speech dataset (lazy splits and its train statistics)."""
  from reexam_jax.data import speech  # pylint: disable=g-import-not-at-top
  dataset, prepared_dir, kwargs = _speech_args(config)
  return speech.open_speech(dataset, prepared_dir, **kwargs)


def training_normalisation(config) -> Dict[str, Any]:
  """What turns config's raw own data into the model's sequences, from its training
  data: array_folder {'stats': ArrayStats}; wav_folder/fsdd {'mean', 'std',
  'sample_rate'} of the prepared set; midi_folder {} (rolls as they are)."""
  if config.dataset == 'array_folder':
    return dict(stats=load_arrays(config)[1])
  if config.dataset in ('wav_folder', 'fsdd'):
    prepared = open_speech_dataset(config)
    return dict(mean=prepared.mean, std=prepared.std, sample_rate=prepared.sample_rate)
  if config.dataset == 'midi_folder':
    return {}
  raise errors.UserError(f'--config.dataset={config.dataset}: scoring new data reads '
                         'the own-data datasets (wav_folder, midi_folder, array_folder)')


def to_model(config, norm: Dict[str, Any], x, name: str) -> np.ndarray:
  """One raw sequence (a [T, 88] roll, a [T, D] array, [N] audio at the prepared sample
  rate) -> the model's, with training_normalisation's `norm`; UserError naming `name`
  when it is not one."""
  x = np.asarray(x)
  if config.dataset == 'array_folder':
    return array_folder.apply_stats(array_folder.check_sequence(x, name), norm['stats'],
                                    name)
  if config.dataset == 'midi_folder':
    if x.ndim != 2 or x.shape[1] != midi.NUM_PITCHES or not ((x == 0) | (x == 1)).all():
      raise errors.UserError(f'{name}: shape {x.shape}; expected a 0/1 piano roll [T, 88]')
    return x.astype(np.float32)
  if x.ndim != 1 or not len(x):
    raise errors.UserError(f'{name}: shape {x.shape}; expected mono audio [N]')
  from reexam_jax.data import transforms  # pylint: disable=g-import-not-at-top
  return transforms.stride(transforms.normalise(x, norm['mean'], norm['std']),
                           config.stride, config.stride_mode)


def read_files(config, path: str) -> Tuple[List[str], List[np.ndarray]]:
  """(names, sequences) of new data at path (a file, or a directory searched
  recursively) in the format of config's own dataset, as the model sees them
  (to_model): MIDI on the config's grid, arrays standardised with the training data's
  stats, audio resampled to the prepared rate. UserError naming the file that cannot be
  read, or path when it holds no such file."""
  if not os.path.exists(path):
    raise errors.UserError(f'--score_input={path}: no such file or directory')
  norm = training_normalisation(config)
  if config.dataset == 'array_folder':
    named = array_folder.read_sequences(path)
  elif config.dataset == 'midi_folder':
    files = (folders.find_files(path, midi_folder.EXTS) if os.path.isdir(path)
             else {path: path})
    named = [(p, _read_one(midi_folder.read_midi, p, **midi_grid(config)))
             for p in files.values()]
  else:
    from reexam_jax.data import tfds_builders  # pylint: disable=g-import-not-at-top
    from reexam_jax.data import transforms  # pylint: disable=g-import-not-at-top
    files = (tfds_builders.find_audio(path, tfds_builders.WavFolder.EXTS)
             if os.path.isdir(path) else {path: path})
    named = []
    for p in files.values():
      audio, rate = _read_one(tfds_builders.read_audio, p)
      named.append((p, transforms.resample(audio, rate, norm['sample_rate'])))
  if not named:
    raise errors.UserError(f'--score_input={path}: no {config.dataset} files in it')
  return [n for n, _ in named], [to_model(config, norm, x, n) for n, x in named]


def _read_one(read, path: str, **kwargs):
  """read(path, **kwargs); its ValueError (an unreadable file) as a UserError."""
  try:
    return read(path, **kwargs)
  except ValueError as e:
    raise errors.UserError(str(e)) from e
