"""Datasets by name: `load_dataset(config)` -> {'train', 'valid', 'test'}: lists of
numpy sequences, each [T_i, ...] whose row-major flattening is the element stream, or,
for the file datasets streamed from disk (VCTK, Blizzard), lazy splits
(`speech.SpeechSplit`) that `batching.make_train_stream` and `batching.eval_chunks`
read piece by piece. Speech results also carry 'sort_eval' (evaluation batch order)."""
from typing import Dict, List

import numpy as np

from reexam_jax.data import midi

MIDI_DATASETS = tuple(midi.FILE_STEMS)
SPEECH_DATASETS = ('timit', 'perm_timit', 'vctk', 'blizzard', 'wav_folder', 'fsdd')


def load_dataset(config) -> Dict[str, List[np.ndarray]]:
  """Loads config.dataset from config.data_dir (see each domain's module).

  Speech: the raw corpus is read from data_dir and prepared as a TFDS dataset in
  prepared_dir (default data_dir); `stream_from_disk` returns lazy splits.
  """
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
  raise ValueError(f'config.dataset: unknown dataset {config.dataset!r}')


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
