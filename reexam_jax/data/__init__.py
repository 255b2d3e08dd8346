"""Datasets by name: `load_dataset(config)` -> {'train', 'valid', 'test'}: lists of
numpy sequences, each [T_i, ...] whose row-major flattening is the element stream, or,
for the file datasets streamed from disk (VCTK, Blizzard), lazy splits
(`speech.SpeechSplit`) that `batching.make_train_stream` and `batching.eval_chunks`
read piece by piece. Speech results also carry 'sort_eval' (evaluation batch order)."""
import os
from typing import Dict, List

import numpy as np

from reexam_jax import errors
from reexam_jax import experiments
from reexam_jax.data import batching
from reexam_jax.data import midi

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
  if (not os.path.isdir(config.data_dir) and not _is_stroke3_file(config)
      and config.data_dir != experiments.default_data_dir(config.dataset)):
    raise errors.UserError(f'--config.data_dir={config.data_dir}: no such directory')
  data = _load(config)
  for split in midi.SPLITS:
    if not len(data[split]):  # pylint: disable=g-explicit-length-test; lazy splits too
      raise errors.UserError(f'--config.data_dir={config.data_dir}: the {config.dataset} '
                             f'data have no {split} sequences')
  _check_d_data(data['train'], config.model.d_data, config.dataset)
  return data


def _load(config) -> Dict[str, List[np.ndarray]]:
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


def _is_stroke3_file(config) -> bool:
  """stroke3's data_dir may name one .npz file instead of a directory of them."""
  return config.dataset == 'stroke3' and os.path.isfile(config.data_dir)


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
  return dataset, config.prepared_dir or config.data_dir, kwargs


def open_speech_dataset(config):
  """config's prepared speech dataset (lazy splits and its train statistics)."""
  from reexam_jax.data import speech  # pylint: disable=g-import-not-at-top
  dataset, prepared_dir, kwargs = _speech_args(config)
  return speech.open_speech(dataset, prepared_dir, **kwargs)
