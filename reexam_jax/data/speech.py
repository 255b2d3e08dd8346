"""Speech datasets for the trainer: build once with TFDS, read with a data source.

`load_speech` returns every split as a list of normalised 1-D float32 arrays, ready for
`batching.TrainStream` and `batching.eval_chunks` (d_data = 200 frames or 1 flat).
`open_speech` gives the same splits as lazy sequences (`SpeechSplit`), so that large
corpora (VCTK, Blizzard chapters) are trained on buffer by buffer
(`batching.FileStream`) and evaluated group by group without loading everything.

Layout: prepared datasets live in `<data_dir>/<dataset>/<config>/1.0.0/` (ArrayRecord);
the raw corpus is read from `manual_dir`, by default `data_dir` itself. A dataset is
built the first time it is asked for and reused afterwards. When `data_dir` is not
writable (a read-only corpus) and holds no prepared copy, the dataset is prepared in
`default_prepared_dir()` instead. Per-utterance lengths are indexed once per prepared
dataset in `<prepared dir>/lengths.json` (so streams can plan epochs without reading
audio).
"""
import collections.abc
import contextlib
import dataclasses
import io
import json
import logging
import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow_datasets as tfds

from reexam_jax import fileio
from reexam_jax.data import transforms
from reexam_jax.data.tfds_builders import BUILDERS, SPLITS, SpeechBuilder

DATASETS = tuple(BUILDERS)

# Evaluation batch order (docs/reference.md, "Evaluation"): sorted by length for TIMIT,
# list order for files.
SORT_EVAL = {'timit': True, 'perm_timit': True, 'vctk': False, 'blizzard': False,
             'wav_folder': False}

LENGTHS_FILE = 'lengths.json'


def default_prepared_dir() -> str:
  """Where datasets of read-only corpora are prepared: $REEXAM_DATA_DIR/prepared, else
  ~/.cache/reexam_jax/prepared."""
  root = os.environ.get('REEXAM_DATA_DIR',
                        os.path.join(os.path.expanduser('~'), '.cache', 'reexam_jax'))
  return os.path.join(root, 'prepared')


def _writable(path: str) -> bool:
  """True if path (or, when missing, its nearest existing parent) is writable."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      return False
    path = parent
  return os.access(path, os.W_OK)


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
  with quiet_tfds():
    builder = cls(data_dir=data_dir, config=config)
    prepared = builder.is_prepared()
  if not prepared and not _writable(data_dir):
    fallback = default_prepared_dir()
    logging.info('%s is not writable: preparing %s in %s', data_dir, dataset, fallback)
    data_dir = fallback
    with quiet_tfds():
      builder = cls(data_dir=data_dir, config=config)
      prepared = builder.is_prepared()
  if not prepared:
    cls.check_source(manual_dir)
    print(f'preparing {dataset} from {manual_dir} in {data_dir} (once)', flush=True)
    with quiet_tfds():
      _prepare(builder, data_dir, manual_dir)
  return builder


@contextlib.contextmanager
def quiet_tfds():
  """TFDS's notices silenced: its absl warnings (a custom builder configuration, a
  fresh build's missing dataset_info.json) and its 'Downloading and preparing' lines on
  stdout. They describe TFDS's own catalogue, not a user's data; speech_builder prints
  the one line that matters."""
  absl_logger = logging.getLogger('absl')
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    absl_logger.setLevel(level)


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

  Reads go to the ArrayRecord data source on demand, so iterating (or `take`) holds one
  utterance (or one batch) in memory at a time. `lengths()` and `take()` make it a lazy
  split for `batching.FileStream` and `batching.eval_chunks`.
  """
  source: collections.abc.Sequence
  mean: float
  std: float
  stride: int = 1
  stride_mode: str = 'all_phases'
  name: str = ''  # split name (key in the lengths index)
  index_dir: Optional[str] = None  # directory of lengths.json (None: scan, no cache)
  raw_lengths: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index):
    if not -len(self) <= index < len(self):
      raise IndexError(f'utterance {index} of {len(self)}')
    return self._transform(self.source[index % len(self)]['audio'])

  def _transform(self, audio: np.ndarray) -> np.ndarray:
    x = transforms.normalise(audio, self.mean, self.std)
    return transforms.stride(x, self.stride, self.stride_mode)

  def lengths(self) -> np.ndarray:
    """[num utterances] int64: samples of each item (after the stride), from the
    stored audio lengths, without reading audio when they are indexed."""
    if self.raw_lengths is None:
      self.raw_lengths = (cached_lengths(self.index_dir, self.name, self.source)
                          if self.index_dir else scan_lengths(self.source))
    return strided_lengths(self.raw_lengths, self.stride, self.stride_mode)

  def take(self, indices: Sequence[int]) -> List[np.ndarray]:
    """Items at `indices` (any order, one batched read)."""
    indices = [int(i) for i in indices]
    for i in indices:
      if not 0 <= i < len(self):
        raise IndexError(f'utterance {i} of {len(self)}')
    return [self._transform(r['audio']) for r in self.source.__getitems__(indices)]

  def load(self, read_size: int = 256) -> Tuple[List[np.ndarray], List[str]]:
    """All utterances in memory, and their ids (paths in the corpus)."""
    seqs, ids = [], []
    for start in range(0, len(self), read_size):
      stop = min(start + read_size, len(self))
      for record in self.source.__getitems__(range(start, stop)):
        seqs.append(self._transform(record['audio']))
        ids.append(record['id'].decode())
    return seqs, ids


def strided_lengths(raw: np.ndarray, stride: int, mode: str = 'all_phases') -> np.ndarray:
  """Lengths after `transforms.stride`: floor(N/m)*m ('all_phases') or ceil(N/m)."""
  raw = np.asarray(raw, np.int64)
  if stride == 1:
    return raw
  if mode == 'all_phases':
    return raw // stride * stride
  if mode == 'single_phase':
    return -(-raw // stride)
  raise ValueError(f'unknown stride mode {mode!r}; expected one of {transforms.STRIDE_MODES}')


def scan_lengths(source: collections.abc.Sequence, read_size: int = 256) -> np.ndarray:
  """[len(source)] int64 audio lengths, read record by record (one group in memory)."""
  out = np.zeros(len(source), np.int64)
  for start in range(0, len(source), read_size):
    stop = min(start + read_size, len(source))
    for i, record in enumerate(source.__getitems__(range(start, stop))):
      out[start + i] = np.size(record['audio'])
  return out


def cached_lengths(path: str, split: str, source: collections.abc.Sequence) -> np.ndarray:
  """Raw audio lengths of `split` from `<path>/lengths.json`; the first time, the split
  is scanned and its entry added (when the directory is writable)."""
  index = os.path.join(path, LENGTHS_FILE)
  stored = {}
  if os.path.exists(index):
    with open(index) as f:
      stored = json.load(f)
    if len(stored.get(split, ())) == len(source):
      return np.asarray(stored[split], np.int64)
  lengths = scan_lengths(source)
  stored[split] = lengths.tolist()
  try:
    fileio.write_text(index, json.dumps(stored))
  except OSError as e:
    logging.info('cannot cache utterance lengths in %s: %s', index, e)
  return lengths


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

  def as_dict(self) -> dict:
    """The splits (lazy) and metadata under `load_speech`'s keys, minus `ids`."""
    return dict(train=self.train, valid=self.valid, test=self.test, mean=self.mean,
                std=self.std, sample_rate=self.sample_rate, sort_eval=self.sort_eval,
                counts={s: len(getattr(self, s)) for s in SPLITS},
                metadata=self.metadata, path=self.path)


def open_speech(dataset: str, data_dir: str, *, manual_dir: Optional[str] = None,
                split_seed: int = 1234, stride: int = 1, stride_mode: str = 'all_phases',
                **options) -> SpeechData:
  """Lazy splits of `dataset` (built on first use), normalised by the train mean/std
  and down-sampled by `stride` ('all_phases' is the reference; docs/reference.md, "Data
  pipelines")."""
  if stride_mode not in transforms.STRIDE_MODES:
    raise ValueError(f'unknown stride_mode {stride_mode!r}; expected one of '
                     f'{transforms.STRIDE_MODES}')
  builder = speech_builder(dataset, data_dir, manual_dir=manual_dir,
                           split_seed=split_seed, **options)
  with quiet_tfds():
    meta = dict(builder.info.metadata)
    sources = builder.as_data_source()
  path = os.fspath(builder.data_path)
  splits = {s: SpeechSplit(sources[s], meta['mean'], meta['std'], stride, stride_mode,
                           name=s, index_dir=path)
            for s in SPLITS}
  return SpeechData(dataset=dataset, mean=meta['mean'], std=meta['std'],
                    sample_rate=meta['sample_rate'], metadata=meta, path=path, **splits)


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
