"""Datasets by name: `load_dataset(config)` -> {'train', 'valid', 'test'} lists of
numpy sequences, each [T_i, ...] whose row-major flattening is the element stream."""
from typing import Dict, List

import numpy as np

from reexam_jax.data import midi

MIDI_DATASETS = tuple(midi.FILE_STEMS)
SPEECH_DATASETS = ('timit', 'perm_timit', 'vctk', 'blizzard', 'wav_folder')


def load_dataset(config) -> Dict[str, List[np.ndarray]]:
  """Loads config.dataset from config.data_dir (see each domain's module)."""
  if config.dataset in MIDI_DATASETS:
    return midi.load_midi(config.dataset, config.data_dir)
  if config.dataset == 'bach_music21':
    return midi.load_bach_chorales(config.data_dir, config.max_pieces)
  if config.dataset in SPEECH_DATASETS:
    from reexam_jax.data import speech  # pylint: disable=g-import-not-at-top
    return speech.load_speech(config.dataset, config.data_dir, stride=config.stride,
                              stride_mode=config.stride_mode)
  raise ValueError(f'config.dataset: unknown dataset {config.dataset!r}')
