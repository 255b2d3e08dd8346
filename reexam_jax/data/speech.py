"""Speech datasets for the trainer: build once with TFDS, read with a data source.

`load_speech` returns every split as a list of normalised 1-D float32 arrays, ready for
`batching.TrainStream` and `batching.eval_chunks` (d_data = 200 frames or 1 flat).
`open_speech` gives the same splits as lazy sequences, so that large corpora
(Blizzard chapters) can be evaluated file by file without loading everything.

Layout: prepared datasets live in `<data_dir>/<dataset>/<config>/1.0.0/` (ArrayRecord);
the raw corpus is read from `manual_dir`, by default `data_dir` itself. A dataset is
built the first time it is asked for and reused afterwards.
"""
import collections.abc
import dataclasses
import os
import tempfile
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds

from reexam_jax.data import transforms
from reexam_jax.data.tfds_builders import BUILDERS, SPLITS, SpeechBuilder

DATASETS = tuple(BUILDERS)

# Evaluation batch order (spec §5.2): sorted by length for TIMIT, list order for files.
SORT_EVAL = {'timit': True, 'perm_timit': True, 'vctk': False, 'blizzard': False,
             'wav_folder': False}


def speech_builder(dataset: str, data_dir: str, *, manual_dir: Optional[str] = None,
                   split_seed: int = 1234, **options) -> SpeechBuilder:
  """The TFDS builder of `dataset`, built from `manual_dir` (default data_dir) if it is
  not prepared yet. `options` are SpeechConfig fields (valid_frac, test_frac,
  sample_rate, max_files, unbiased_std, list_dir)."""
  if dataset not in BUILDERS:
    raise ValueError(f'unknown speech dataset {dataset!r}; expected one of {DATASETS}')
  cls = BUILDERS[dataset]
  manual_dir = os.path.abspath(manual_dir or data_dir)
  config = cls.make_config(manual_dir, split_seed=split_seed, **options)
  builder = cls(data_dir=data_dir, config=config)
  if not builder.is_prepared():
    cls.check_source(manual_dir)
    _prepare(builder, data_dir, manual_dir)
  return builder


def _prepare(builder: SpeechBuilder, data_dir: str, manual_dir: str) -> None:
  """download_and_prepare into TFDS's incomplete.* directory (renamed when complete);
  on failure also remove the empty directories the attempt left under data_dir."""
  try:
    with tempfile.TemporaryDirectory() as download_dir:
      builder.download_and_prepare(
          download_dir=download_dir, file_format='array_record',
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except BaseException:
    _remove_empty_dirs(os.fspath(builder.data_path.parent), data_dir)
    raise


def _remove_empty_dirs(path: str, top: str) -> None:
  """Remove path, then its parents below top, for as long as they are empty."""
  path, top = os.path.abspath(path), os.path.abspath(top)
  while path.startswith(top + os.sep) and os.path.isdir(path) and not os.listdir(path):
    os.rmdir(path)
    path = os.path.dirname(path)


@dataclasses.dataclass
class SpeechSplit(collections.abc.Sequence):
  """Lazy view of one split: item i is utterance i, normalised then strided, [N] float32.

  Reads go to the ArrayRecord data source on demand, so iterating (or `groups`) holds
  one utterance (or one group) in memory at a time.
  """
  source: collections.abc.Sequence
  mean: float
  std: float
  stride: int = 1
  stride_mode: str = 'all_phases'

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    if not -len(self) <= index < len(self):
      raise IndexError(f'utterance {index} of {len(self)}')
    return self._transform(self.source[index % len(self)]['audio'])

  def _transform(self, audio: np.ndarray) -> np.ndarray:
    x = transforms.normalise(audio, self.mean, self.std)
    return transforms.stride(x, self.stride, self.stride_mode)

  def _read(self, start: int, stop: int) -> List[dict]:
    return self.source.__getitems__(range(start, min(stop, len(self))))

  def groups(self, size: int) -> Iterator[List[np.ndarray]]:
    """Consecutive groups of `size` utterances (one evaluation batch each, in order)."""
    for start in range(0, len(self), size):
      yield [self._transform(r['audio']) for r in self._read(start, start + size)]

  def load(self, read_size: int = 256) -> Tuple[List[np.ndarray], List[str]]:
    """All utterances in memory, and their ids (paths in the corpus)."""
    seqs, ids = [], []
    for start in range(0, len(self), read_size):
      for record in self._read(start, start + read_size):
        seqs.append(self._transform(record['audio']))
        ids.append(record['id'].decode())
    return seqs, ids


@dataclasses.dataclass
class SpeechData:
  """The three splits of a prepared dataset and its metadata."""
  dataset: str
  train: SpeechSplit
  valid: SpeechSplit
  test: SpeechSplit
  mean: float
  std: float
  sample_rate: int
  metadata: Dict[str, object]
  path: str  # the prepared dataset directory

  @property
  def sort_eval(self) -> bool:
    return SORT_EVAL[self.dataset]


def open_speech(dataset: str, data_dir: str, *, manual_dir: Optional[str] = None,
                split_seed: int = 1234, stride: int = 1, stride_mode: str = 'all_phases',
                **options) -> SpeechData:
  """Lazy splits of `dataset` (built on first use), normalised by the train mean/std
  and down-sampled by `stride` (spec §8.5; 'all_phases' is the reference)."""
  if stride_mode not in transforms.STRIDE_MODES:
    raise ValueError(f'unknown stride_mode {stride_mode!r}; expected one of '
                     f'{transforms.STRIDE_MODES}')
  builder = speech_builder(dataset, data_dir, manual_dir=manual_dir,
                           split_seed=split_seed, **options)
  meta = dict(builder.info.metadata)
  sources = builder.as_data_source()
  splits = {s: SpeechSplit(sources[s], meta['mean'], meta['std'], stride, stride_mode)
            for s in SPLITS}
  return SpeechData(dataset=dataset, mean=meta['mean'], std=meta['std'],
                    sample_rate=meta['sample_rate'], metadata=meta,
                    path=os.fspath(builder.data_path), **splits)


def load_speech(dataset: str, data_dir: str, *, manual_dir: Optional[str] = None,
                split_seed: int = 1234, stride: int = 1, stride_mode: str = 'all_phases',
                **options) -> dict:
  """Every split in memory: dict(train, valid, test: lists of normalised 1-D float32
  arrays; ids: {split: utterance ids}; mean, std: train statistics in the raw scale;
  sample_rate; sort_eval: eval batch order; counts: utterances per split; metadata:
  the dataset's stored metadata; path: the prepared dataset directory)."""
  data = open_speech(dataset, data_dir, manual_dir=manual_dir, split_seed=split_seed,
                     stride=stride, stride_mode=stride_mode, **options)
  loaded = {s: getattr(data, s).load() for s in SPLITS}
  return dict(**{s: seqs for s, (seqs, _) in loaded.items()},
              ids={s: ids for s, (_, ids) in loaded.items()},
              mean=data.mean, std=data.std, sample_rate=data.sample_rate,
              sort_eval=data.sort_eval, counts={s: len(loaded[s][0]) for s in SPLITS},
              metadata=data.metadata, path=data.path)
