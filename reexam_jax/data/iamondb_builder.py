"""IAM-OnDB prepared once as a TFDS dataset (ArrayRecord, no TensorFlow), then loaded
as normalised (pen, dx, dy) steps; the conventions are in `handwriting` and in
docs/reference.md ("Data pipelines").

The build parses the line files of every listed form and stores one example per text
line, in list order: {'steps': int32 [T, 3] raw (pen, dx, dy), 'id': the line file's
name without .xml}. The train offsets' mean is taken while writing and kept in the
metadata with the fixed std; the stored steps are never rescaled. Every listed form is
looked up before anything is written, and TFDS builds into an `incomplete.*`
directory renamed only at the end, so a missing form or a malformed file leaves no
prepared dataset behind.

Layout: `<prepared_dir>/iamondb/<config>/1.0.0/`, config 'paper' for the paper's split
lists and 'lists_<digest>' for others. prepared_dir defaults to the directory holding
`lineStrokes/` (one prepared copy whichever of the two data_dir forms is given), or to
`speech.default_prepared_dir()` when that directory is not writable.
"""
import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Tuple

from array_record.python import array_record_module
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from reexam_jax.data import handwriting
from reexam_jax.data import speech

SPLITS = handwriting.IAMONDB_SPLITS
PAPER_CONFIG = 'paper'


@dataclasses.dataclass(eq=False)
class IamOnDbConfig(tfds.core.BuilderConfig):
  """The split lists to build from (their content names the config)."""
  train_list: str = ''
  valid_list: str = ''


class IamOnDb(tfds.core.DatasetBuilder, skip_registration=True):
  """IAM-OnDB text lines as raw (pen, dx, dy) steps, one example per line."""
  name = 'iamondb'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Put the IAM-OnDB lineStrokes/ tree in the manual_dir.'
  code_path = None  # nothing is downloaded (see tfds_builders.SpeechBuilder.code_path)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'steps': tfds.features.Tensor(shape=(None, 3), dtype=np.int32,
                                          encoding=tfds.features.Encoding.BYTES),
            'id': tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True)  # list order, as the reference

  def _download_and_prepare(self, dl_manager, download_config):
    """Writes both splits (into TFDS's incomplete.* directory) and the metadata."""
    del download_config
    strokes_dir = os.fspath(dl_manager.manual_dir)
    lists = {'train': self.builder_config.train_list,
             'valid': self.builder_config.valid_list}
    files = {s: handwriting.split_line_files(strokes_dir, lists[s]) for s in SPLITS}
    infos, offset_sum, num_steps = {}, {}, {}
    for split in SPLITS:
      infos[split], offset_sum[split], num_steps[split] = self._write_split(split,
                                                                            files[split])
    self.info.metadata.update(
        dataset=self.name, source_dir=os.path.abspath(strokes_dir), lists=lists,
        mean=(offset_sum['train'] / num_steps['train']).tolist(),
        std=handwriting.IAMONDB_STD, num_steps=num_steps,
        num_lines={s: infos[s].num_examples for s in SPLITS},
        dropped_lines={s: len(files[s]) - infos[s].num_examples for s in SPLITS})
    self.info.set_splits(tfds.core.SplitDict(list(infos.values())))

  def _write_split(self, split: str,
                   files: List[str]) -> Tuple[tfds.core.SplitInfo, np.ndarray, int]:
    """Writes one example per line with at least one step (two points); returns the
    SplitInfo, the sum [2] of the (dx, dy) written and the number of steps."""
    template = self._get_filename_template(split)
    writer = array_record_module.ArrayRecordWriter(
        os.fspath(template.sharded_filepath(shard_index=0, num_shards=1)), 'group_size:1')
    offset_sum, num_steps, num_lines, num_bytes = np.zeros(2, np.int64), 0, 0, 0
    try:
      for path in tqdm.tqdm(files, desc=f'iamondb {split}', unit=' lines', leave=False,
                            mininterval=1.0):
        steps = handwriting.points_to_steps(handwriting.line_points(path))  # [T, 3]
        if not len(steps):
          continue
        record = self.info.features.serialize_example(
            {'steps': steps.astype(np.int32),
             'id': os.path.splitext(os.path.basename(path))[0]})
        writer.write(record)
        offset_sum += steps[:, 1:].sum(axis=0)
        num_steps += len(steps)
        num_lines += 1
        num_bytes += len(record)
    finally:
      writer.close()
    info = tfds.core.SplitInfo(name=split, shard_lengths=[num_lines], num_bytes=num_bytes,
                               filename_template=template)
    return info, offset_sum, num_steps

  def _as_dataset(self, *args, **kwargs):
    raise NotImplementedError('tf.data reading needs TensorFlow; use as_data_source()')


def make_config(lists: Dict[str, str]) -> IamOnDbConfig:
  """The config of these split lists: 'paper' when they hold the packaged lists' IDs,
  else 'lists_<digest of the IDs>'."""
  ids = {s: handwriting.read_form_ids(lists[s]) for s in SPLITS}
  paper = {s: handwriting.read_form_ids(os.path.join(handwriting.PACKAGED_LISTS,
                                                     f'{s}.txt'))
           for s in SPLITS}
  name = PAPER_CONFIG
  if ids != paper:
    name = 'lists_' + hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:8]
  lists = {s: os.path.abspath(lists[s]) for s in SPLITS}
  return IamOnDbConfig(name=name, description=json.dumps(lists),
                       train_list=lists['train'], valid_list=lists['valid'])


def iamondb_builder(data_dir: str, prepared_dir: str = '') -> IamOnDb:
  """The prepared IAM-OnDB of data_dir (`lineStrokes/` or the directory holding it),
  built on first use (see the module docstring for where)."""
  strokes_dir = handwriting.find_strokes_dir(data_dir)
  config = make_config(handwriting.split_lists(strokes_dir))
  target = prepared_dir or os.path.dirname(os.path.abspath(strokes_dir))
  builder = IamOnDb(data_dir=target, config=config)
  if not builder.is_prepared() and not speech._writable(target):  # pylint: disable=protected-access
    target = speech.default_prepared_dir()
    builder = IamOnDb(data_dir=target, config=config)
  if not builder.is_prepared():
    speech._prepare(builder, target, strokes_dir)  # pylint: disable=protected-access
  return builder


def load_iamondb(data_dir: str, prepared_dir: str = '', read_size: int = 256) -> dict:
  """IAM-OnDB in memory: dict(train, valid: lists of [T_i, 3] float32 (pen, dx, dy)
  normalised by the train mean and the fixed std; ids: {split: line ids}; mean: [2];
  std; counts: lines per split; metadata: the stored metadata; path: the prepared
  dataset directory). There is no test split."""
  builder = iamondb_builder(data_dir, prepared_dir)
  meta = dict(builder.info.metadata)
  mean, std = np.asarray(meta['mean'], np.float64), float(meta['std'])
  sources = builder.as_data_source()
  out = {'ids': {}}
  for split in SPLITS:
    source, out[split], out['ids'][split] = sources[split], [], []
    for start in range(0, len(source), read_size):
      for record in source.__getitems__(range(start, min(start + read_size, len(source)))):
        out[split].append(handwriting.normalise(record['steps'], mean, std))
        out['ids'][split].append(record['id'].decode())
  return dict(**out, mean=mean, std=std, counts={s: len(out[s]) for s in SPLITS},
              metadata=meta, path=os.fspath(builder.data_path))
