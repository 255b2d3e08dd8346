"""TFDS builders for the speech corpora: TIMIT, Perm-TIMIT, VCTK, Blizzard and any
folder of audio files (docs/reference.md, "Data pipelines").

Each builder reads a corpus from the TFDS `manual_dir`, decodes the audio itself
(NIST SPHERE here, RIFF/FLAC/MP3 via soundfile; `tfds.features.Audio` would need
TensorFlow) and writes one ArrayRecord example per utterance:
`{'audio': float32 [N] (raw scale, mono, at the dataset's rate), 'id': relative path}`.
Examples keep the split's file order (sorted paths, or list-file order).

The train split's global mean and std are accumulated while it is written and stored
in the dataset metadata (`builder.info.metadata`); readers normalise with them, so the
stored audio is never rescaled. TFDS's `download_and_prepare` builds into an
`incomplete.*` directory and renames it when done, so an interrupted or failed build
leaves no dataset behind. Nothing here imports TensorFlow: splits are read back with
`builder.as_data_source()`.
"""
import dataclasses
import hashlib
import json
import os
import random
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from array_record.python import array_record_module
import numpy as np
import soundfile
import tensorflow_datasets as tfds
import tqdm

from reexam_jax.data import transforms
from reexam_jax.data.splits import SPLITS, find_list_files, ratio_split, split_from_lists

# ----------------------------------------------------------------------------------
# Audio decoding.

_SPHERE_MAGIC = b'NIST_1A'


def parse_sphere_header(data: bytes) -> Dict[str, object]:
  """Fields of a NIST SPHERE header ("NIST_1A\\n   1024\\n" then `name -type value`
  lines up to `end_head`); -i gives int, -r float, -sN str. `data` may be the whole
  file. Adds 'header_size' (bytes before the samples)."""
  magic, size, rest = (data.split(b'\n', 2) + [b'', b''])[:3]
  if magic.strip() != _SPHERE_MAGIC or not size.strip().isdigit():
    raise ValueError('not a NIST SPHERE header')
  fields: Dict[str, object] = {'header_size': int(size)}
  for raw in rest[:int(size)].split(b'\n'):
    line = raw.decode('ascii', errors='replace').rstrip('\r')
    if line.strip() == 'end_head':
      return fields
    if not line.strip() or line.startswith(';'):
      continue
    name, kind, value = (line.split(' ', 2) + ['', ''])[:3]
    if kind == '-i':
      fields[name] = int(value)
    elif kind == '-r':
      fields[name] = float(value)
    elif kind.startswith('-s'):
      fields[name] = value[:int(kind[2:])] if kind[2:].isdigit() else value
    else:
      raise ValueError(f'bad SPHERE header line {line!r}')
  raise ValueError('SPHERE header has no end_head')


def read_sphere(path: str) -> Tuple[np.ndarray, int]:
  """Uncompressed 16-bit PCM NIST SPHERE file -> (float32 [N, C] in [-1, 1), rate)."""
  with open(path, 'rb') as f:
    data = f.read()
  head = parse_sphere_header(data)
  coding = str(head.get('sample_coding', 'pcm'))
  if coding != 'pcm':
    raise ValueError(f'compressed SPHERE (sample_coding={coding!r}); decompress it with '
                     'sph2pipe or sox first')
  if head.get('sample_n_bytes', 2) != 2:
    raise ValueError(f'unsupported sample_n_bytes={head["sample_n_bytes"]} (need 2)')
  order = {'01': '<', '10': '>'}.get(str(head.get('sample_byte_format', '01')))
  if order is None:
    raise ValueError(f'unsupported sample_byte_format={head["sample_byte_format"]!r}')
  channels = int(head.get('channel_count', 1))
  count = int(head['sample_count']) * channels
  start = int(head['header_size'])
  if len(data) < start + 2 * count:
    raise ValueError(f'truncated SPHERE file: header says {count} samples, '
                     f'file holds {(len(data) - start) // 2}')
  pcm = np.frombuffer(data, order + 'i2', count=count, offset=start)
  audio = (pcm.astype(np.float32) / 32768.0).reshape(-1, channels)
  return audio, int(head['sample_rate'])


def read_audio(path: str) -> Tuple[np.ndarray, int]:
  """Any supported audio file -> (mono float32 [N] in [-1, 1), sample rate).

  Every failure is a ValueError naming the file.
  """
  try:
    with open(path, 'rb') as f:
      magic = f.read(len(_SPHERE_MAGIC))
    if magic == _SPHERE_MAGIC:
      audio, rate = read_sphere(path)
    else:
      if path.lower().endswith('.mp3') and 'MP3' not in soundfile.available_formats():
        raise ValueError(f'this libsndfile ({soundfile.__libsndfile_version__}) cannot '
                         'decode mp3 (needs >= 1.1); convert with `ffmpeg -i in.mp3 '
                         '-ar 16000 out.wav`')
      audio, rate = soundfile.read(path, dtype='float32', always_2d=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'cannot read audio file {path}: {e}') from e
  return transforms.to_mono(audio).astype(np.float32), int(rate)


# ----------------------------------------------------------------------------------
# Finding files and splitting them.

def find_audio(root: str, exts: Sequence[str]) -> Dict[str, str]:
  """{key: path} of audio files under root, key = relative path without extension.

  Extensions match case-insensitively; when one key has several files (e.g. a.mp3 and
  its a.wav conversion) the extension listed first in `exts` wins. Names ending in
  '.wav.wav' (RIFF copies of SPHERE files in some TIMIT releases) are skipped.
  """
  rank = {e: i for i, e in enumerate(exts)}
  found: Dict[str, Tuple[int, str]] = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      stem, ext = os.path.splitext(name)
      ext = ext.lower()
      if ext not in rank or name.lower().endswith('.wav.wav'):
        continue
      key = os.path.relpath(os.path.join(dirpath, stem), root)
      if key not in found or rank[ext] < found[key][0]:
        found[key] = (rank[ext], os.path.join(dirpath, name))
  return {k: p for k, (_, p) in sorted(found.items())}


# ----------------------------------------------------------------------------------
# Builders.

@dataclasses.dataclass(eq=False)
class SpeechConfig(tfds.core.BuilderConfig):
  """Build-time options; they change the stored content, so they name the config."""
  split_seed: int = 1234
  valid_frac: float = 0.05
  test_frac: float = 0.05
  sample_rate: Optional[int] = None  # None: keep the files' (uniform) rate
  max_files: Optional[int] = None  # seeded subset of the corpus (quick tests)
  unbiased_std: bool = False  # torch.std (n - 1) vs population std (n)
  list_dir: Optional[str] = None  # split lists; default: the manual dir


def config_options(config: SpeechConfig) -> Dict[str, object]:
  """The SpeechConfig fields (not those of tfds.core.BuilderConfig) as a dict."""
  base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
  return {f.name: getattr(config, f.name) for f in dataclasses.fields(SpeechConfig)
          if f.name not in base}


class SpeechBuilder(tfds.core.DatasetBuilder, skip_registration=True):
  """Common generation: split files, decode, resample, accumulate train stats.

  Each split is streamed into one ArrayRecord file, one utterance in memory at a time.
  TFDS's GeneratorBasedBuilder is not used: it buffers a whole split in memory and,
  past 1 GB, spills it through tf.io.gfile, so it needs TensorFlow (tfds 4.9.10).
  """
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Put the corpus in the manual_dir.'
  EXTS = ('.wav', '.flac', '.mp3')  # in order of preference (a wav beats its mp3)
  DEFAULTS: Dict[str, object] = {}
  # Nothing is downloaded, so there is no checksums file to locate. Without this, TFDS
  # 4.9.10 looks for it through `importlib_resources`, a package it declares only for
  # Python < 3.9 yet imports on every version.
  code_path = None

  @classmethod
  def make_config(cls, manual_dir: str, **options) -> SpeechConfig:
    """The config for these options (class DEFAULTS fill the unset ones)."""
    options = {**cls.DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    if options.get('list_dir'):
      options['list_dir'] = os.path.abspath(options['list_dir'])
    config = SpeechConfig(name='tmp', **options)
    return dataclasses.replace(config, name=cls.config_name(config, manual_dir),
                               description=json.dumps(config_options(config)))

  @classmethod
  def config_name(cls, config: SpeechConfig, manual_dir: str) -> str:
    """'seed<split_seed>', plus a digest of the options when any differs from the
    dataset's defaults (so two variants never share a directory)."""
    del manual_dir
    options = config_options(config)
    name = f'seed{config.split_seed}'
    if options != {**config_options(SpeechConfig(name='')), **cls.DEFAULTS,
                   'split_seed': config.split_seed}:
      name += '_' + _digest(json.dumps(options, sort_keys=True))
    return name

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            # BYTES encoding: raw float32 buffers, ~5x faster than a float proto list.
            'audio': tfds.features.Tensor(shape=(None,), dtype=np.float32,
                                          encoding=tfds.features.Encoding.BYTES),
            'id': tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True)  # file order is meaningful (eval batches follow it)

  # Subclasses define the source check, the split and optional post-processing.
  @classmethod
  def check_source(cls, root: str) -> None:
    """FileNotFoundError saying what is expected where, if root lacks the corpus."""
    raise NotImplementedError

  def split_files(self, root: str) -> Dict[str, List[Tuple[str, str]]]:
    """{split: [(id, path)]} in storage order."""
    raise NotImplementedError

  def postprocess(self, split: str, audio: np.ndarray) -> np.ndarray:
    """Applied after the train statistics are taken (e.g. TIMIT test truncation)."""
    del split
    return audio

  def _download_and_prepare(self, dl_manager, download_config):
    """Writes every split (into TFDS's incomplete.* directory) and the metadata."""
    del download_config
    root = os.fspath(dl_manager.manual_dir)
    files = self.split_files(root)
    for split in SPLITS:
      if not files[split]:
        raise ValueError(f'{self.name}: the {split} split of {root} is empty (too few '
                         'files for valid_frac/test_frac, or an empty list file)')
    rate = self.builder_config.sample_rate or read_audio(files['train'][0][1])[1]
    self.info.metadata.update(
        dataset=self.name, build=json.loads(self.builder_config.description),
        source_dir=os.path.abspath(root), sample_rate=rate,
        num_files={s: len(files[s]) for s in SPLITS})
    infos = [self._write_split(split, files[split], rate) for split in SPLITS]
    self.info.set_splits(tfds.core.SplitDict(infos))

  def _write_split(self, split: str, files: List[Tuple[str, str]],
                   rate: int) -> tfds.core.SplitInfo:
    template = self._get_filename_template(split)
    path = template.sharded_filepath(shard_index=0, num_shards=1)
    # TFDS's record options, with zstd level 1 instead of 3: ~3x faster, ~10% larger.
    writer = array_record_module.ArrayRecordWriter(os.fspath(path), 'group_size:1,zstd:1')
    num_bytes = 0
    try:
      for example in self._examples(split, files, rate):
        record = self.info.features.serialize_example(example)
        writer.write(record)
        num_bytes += len(record)
    finally:
      writer.close()
    return tfds.core.SplitInfo(name=split, shard_lengths=[len(files)],
                               num_bytes=num_bytes, filename_template=template)

  def _examples(self, split: str, files: List[Tuple[str, str]],
                rate: int) -> Iterator[Dict[str, object]]:
    """Decoded examples of one split; for train, records its mean and std."""
    total = (0, 0.0, 0.0)
    for key, path in tqdm.tqdm(files, desc=f'{self.name} {split}', unit=' files',
                               disable=None,  # no bar when stderr is not a terminal
                               leave=False, mininterval=1.0):
      audio, file_rate = read_audio(path)
      if file_rate != rate and self.builder_config.sample_rate is None:
        raise ValueError(f'{path}: sample rate {file_rate} differs from {rate} of the '
                         'other files; pass sample_rate to resample them all')
      audio = transforms.resample(audio, file_rate, rate)
      if split == 'train':
        total = transforms.combine_moments(total, transforms.moments(audio))
      yield {'audio': self.postprocess(split, audio), 'id': key.replace(os.sep, '/')}
    if split == 'train':
      mean, std = transforms.mean_std_from_moments(total, self.builder_config.unbiased_std)
      self.info.metadata.update(mean=mean, std=std, train_num_samples=total[0])

  def _as_dataset(self, *args, **kwargs):
    raise NotImplementedError('tf.data reading needs TensorFlow; use as_data_source()')


def _digest(text: str) -> str:
  return hashlib.sha1(text.encode()).hexdigest()[:8]


def _keyed(keys: Sequence[str], paths: Dict[str, str]) -> List[Tuple[str, str]]:
  return [(k, paths[k]) for k in keys]


def _subset(keys: Sequence[str], max_files: Optional[int], seed: int) -> List[str]:
  """A seeded subset of max_files keys (all when None), sorted."""
  keys = sorted(keys)
  if max_files is None or max_files >= len(keys):
    return keys
  return sorted(random.Random(seed).sample(keys, max_files))


def _listed_or_ratio_split(config: SpeechConfig, root: str,
                           paths: Dict[str, str]) -> Dict[str, List[Tuple[str, str]]]:
  """Split by list files in config.list_dir (default root) if any, else by seeded
  ratios; a max_files subset is drawn first."""
  keys = _subset(paths, config.max_files, config.split_seed)
  lists = find_list_files(config.list_dir or root)
  if lists is not None:
    subset = set(keys)
    splits = {s: [k for k in ks if k in subset]
              for s, ks in split_from_lists(list(paths), lists).items()}
  else:
    splits = ratio_split(keys, config.valid_frac, config.test_frac, config.split_seed)
  return {s: _keyed(splits[s], paths) for s in SPLITS}


def _case_dir(root: str, name: str) -> Optional[str]:
  """root/<name> matched case-insensitively (TRAIN vs train), or None."""
  if not os.path.isdir(root):
    return None
  for entry in sorted(os.listdir(root)):
    if entry.lower() == name.lower() and os.path.isdir(os.path.join(root, entry)):
      return os.path.join(root, entry)
  return None


class Timit(SpeechBuilder, skip_registration=True):
  """LDC TIMIT: TRAIN -> train/valid by a seeded 5% draw, TEST -> test
  (truncated to a multiple of 200 samples); unbiased std over train; 16 kHz."""
  name = 'timit'
  EXTS = ('.wav',)
  DEFAULTS = {'unbiased_std': True, 'sample_rate': 16000}
  TEST_MULTIPLE = 200

  @staticmethod
  def check_source(root: str) -> None:
    if _case_dir(root, 'TRAIN') is None or _case_dir(root, 'TEST') is None:
      raise FileNotFoundError(
          f'TIMIT not found: put the LDC TIMIT directory (with TRAIN/ and TEST/) at '
          f'{root} or pass --config.data_dir (or manual_dir) pointing at it')

  def split_files(self, root):
    self.check_source(root)
    train_dir, test_dir = _case_dir(root, 'TRAIN'), _case_dir(root, 'TEST')
    train_paths = {os.path.join(os.path.basename(train_dir), k): p
                   for k, p in find_audio(train_dir, self.EXTS).items()}
    test_paths = {os.path.join(os.path.basename(test_dir), k): p
                  for k, p in find_audio(test_dir, self.EXTS).items()}
    config = self.builder_config
    train_keys = _subset(train_paths, config.max_files, config.split_seed)
    # TRAIN is split into train and valid; TEST is the test split.
    train = ratio_split(train_keys, config.valid_frac, 0.0, config.split_seed)
    test = _subset(test_paths, config.max_files, config.split_seed)
    return {'train': _keyed(train['train'], train_paths),
            'valid': _keyed(train['valid'], train_paths),
            'test': _keyed(test, test_paths)}

  def postprocess(self, split, audio):
    if split == 'test':
      return transforms.truncate_multiple(audio, self.TEST_MULTIPLE)
    return audio


class PermTimit(Timit, skip_registration=True):
  """Perm-TIMIT: TIMIT with every utterance truncated to a multiple of 200
  and each 200-sample block permuted by the fixed permutation (stored in the metadata
  and as perm-200.txt). Train statistics are those of the unpermuted TIMIT train."""
  name = 'perm_timit'
  PERM = transforms.timit_permutation()

  def _download_and_prepare(self, dl_manager, download_config):
    self.info.metadata['perm'] = self.PERM.tolist()
    # self.data_dir is TFDS's incomplete.* directory while building.
    with open(os.path.join(os.fspath(self.data_dir), f'perm-{len(self.PERM)}.txt'),
              'w') as f:
      f.write(' '.join(map(str, self.PERM)) + '\n')
    super()._download_and_prepare(dl_manager, download_config)

  def postprocess(self, split, audio):
    return transforms.permute_blocks(audio, self.PERM)


class Vctk(SpeechBuilder, skip_registration=True):
  """VCTK-Corpus 0.80: wav48/<speaker>/*.wav resampled to 16 kHz; split by
  list files if present, else a seeded utterance-level split with the reference's
  35393/4424/4425 proportions; population std."""
  name = 'vctk'
  DEFAULTS = {'sample_rate': 16000, 'valid_frac': 4424 / 44242, 'test_frac': 4425 / 44242}

  @staticmethod
  def check_source(root: str) -> None:
    if not os.path.isdir(os.path.join(root, 'wav48')):
      raise FileNotFoundError(
          f'VCTK not found: expected {os.path.join(root, "wav48")}/<speaker>/*.wav '
          '(VCTK-Corpus 0.80); pass --config.data_dir (or manual_dir) pointing at it')

  def split_files(self, root):
    self.check_source(root)
    wav_root = os.path.join(root, 'wav48')
    return _listed_or_ratio_split(self.builder_config, root,
                                  find_audio(wav_root, self.EXTS))


class Blizzard(SpeechBuilder, skip_registration=True):
  """Blizzard 2013 Lessac audiobook chapters, mp3 or wav, at 16 kHz; split
  by chapter with list files if present, else seeded with the reference's 1023/65/59
  proportions; population std."""
  name = 'blizzard'
  DEFAULTS = {'sample_rate': 16000, 'valid_frac': 65 / 1147, 'test_frac': 59 / 1147}

  @classmethod
  def check_source(cls, root: str) -> None:
    if not os.path.isdir(root) or not find_audio(root, cls.EXTS):
      raise FileNotFoundError(
          f'Blizzard not found: put the Blizzard 2013 unsegmented chapters (*.mp3 or '
          f'*.wav) under {root}, or pass --config.data_dir (or manual_dir)')

  def split_files(self, root):
    self.check_source(root)
    return _listed_or_ratio_split(self.builder_config, root, find_audio(root, self.EXTS))


class WavFolder(SpeechBuilder, skip_registration=True):
  """Any directory of audio files (searched recursively), split by train/valid/test
  list files if present, else by seeded ratios; population std by default."""
  name = 'wav_folder'

  @classmethod
  def config_name(cls, config, manual_dir):
    """<folder name>_<digest of the absolute folder path and every option>."""
    source = os.path.abspath(manual_dir)
    options = {**config_options(config), 'source': source}
    slug = re.sub(r'[^A-Za-z0-9]+', '_', os.path.basename(source))
    return f'{slug}_{_digest(json.dumps(options, sort_keys=True))}'

  @classmethod
  def check_source(cls, root: str) -> None:
    if not os.path.isdir(root) or not find_audio(root, cls.EXTS):
      raise FileNotFoundError(f'no audio files (*.wav, *.flac, *.mp3) under {root}')

  def split_files(self, root):
    self.check_source(root)
    return _listed_or_ratio_split(self.builder_config, root, find_audio(root, self.EXTS))


BUILDERS = {b.name: b for b in (Timit, PermTimit, Vctk, Blizzard, WavFolder)}
