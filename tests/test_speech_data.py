"""Speech data: audio decoding, TFDS builders on small fixture corpora, load_speech.

Fixtures are written by the tests (NIST SPHERE bytes, RIFF wavs, LDC/VCTK/Blizzard
layouts). The real-audio test reads FSDD from the shared data directory
($REEXAM_SHARED_DATA, default <repo>/../shared/data) and skips when it is absent.
"""
import os
import random
import sys

import numpy as np
import pytest
import soundfile
import tensorflow_datasets as tfds

from reexam_jax.data import batching, speech, tfds_builders, transforms

tfds.disable_progress_bar()

SHARED = os.environ.get('REEXAM_SHARED_DATA',
                        os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data'))
FSDD = os.path.join(SHARED, 'speech', 'fsdd', 'recordings')


def sphere_bytes(pcm, rate=16000, byte_format='01', coding=None):
  """A NIST SPHERE file as TIMIT ships it: 1024-byte ASCII header, then int16 PCM."""
  fields = ['database_id -s5 TIMIT', 'database_version -s3 1.0',
            'utterance_id -s8 aks0_sa1', 'channel_count -i 1',
            f'sample_count -i {len(pcm)}', f'sample_rate -i {rate}',
            'sample_min -i -2191', 'sample_max -i 2790', 'sample_n_bytes -i 2',
            f'sample_byte_format -s2 {byte_format}', 'sample_sig_bits -i 16']
  if coding:
    fields.append(f'sample_coding -s{len(coding)} {coding}')
  header = ('NIST_1A\n   1024\n' + '\n'.join(fields) + '\nend_head\n').encode('ascii')
  dtype = '<i2' if byte_format == '01' else '>i2'
  return header.ljust(1024, b' ') + np.asarray(pcm, dtype).tobytes()


def random_pcm(rng, n):
  return rng.integers(-3000, 3000, n).astype(np.int16) + 500  # non-zero mean


# ---------------------------------------------------------------------------- decoding

def test_sphere_header_parsing():
  head = tfds_builders.parse_sphere_header(sphere_bytes(np.zeros(5, np.int16)))
  assert head['header_size'] == 1024 and head['sample_count'] == 5
  assert head['sample_rate'] == 16000 and head['sample_byte_format'] == '01'
  assert head['utterance_id'] == 'aks0_sa1' and head['database_version'] == '1.0'
  with pytest.raises(ValueError, match='not a NIST SPHERE'):
    tfds_builders.parse_sphere_header(b'RIFF....')


@pytest.mark.parametrize('byte_format', ['01', '10'])
def test_read_sphere_both_byte_orders(tmp_path, byte_format):
  pcm = np.array([0, 1, -1, 32767, -32768, 1234], np.int16)
  path = str(tmp_path / 'SA1.WAV')
  with open(path, 'wb') as f:
    f.write(sphere_bytes(pcm, byte_format=byte_format))
  audio, rate = tfds_builders.read_audio(path)
  assert rate == 16000 and audio.dtype == np.float32
  np.testing.assert_array_equal(audio, pcm / 32768.0)


def test_read_riff_wav_matches_sphere_scale(tmp_path):
  pcm = np.array([[0, 2], [100, 300], [-32768, 32767]], np.int16)  # stereo
  path = str(tmp_path / 'a.wav')
  soundfile.write(path, pcm, 8000, subtype='PCM_16')
  audio, rate = tfds_builders.read_audio(path)
  assert rate == 8000
  np.testing.assert_allclose(audio, pcm.mean(axis=1) / 32768.0)


def test_compressed_and_truncated_sphere_fail_naming_file(tmp_path):
  path = str(tmp_path / 'SX1.WAV')
  with open(path, 'wb') as f:
    f.write(sphere_bytes(np.zeros(10, np.int16), coding='pcm,embedded-shorten-v2.00'))
  with pytest.raises(ValueError, match='SX1.WAV.*sample_coding'):
    tfds_builders.read_audio(path)
  with open(path, 'wb') as f:
    f.write(sphere_bytes(np.zeros(10, np.int16))[:-4])
  with pytest.raises(ValueError, match='SX1.WAV.*truncated'):
    tfds_builders.read_audio(path)


def test_list_entries_match_by_path_or_unique_name(tmp_path):
  keys = ['p225/p225_001', 'p225/p225_002', 'p226/p226_001']
  for split, lines in [('train', ['p225/p225_002.wav', 'p226_001.wav.t7']),
                       ('valid', ['p225/p225_001']), ('test', [])]:
    (tmp_path / f'{split}.txt').write_text('\n'.join(lines) + '\n')
  lists = tfds_builders.find_list_files(str(tmp_path))
  splits = tfds_builders.split_from_lists(keys, lists)
  assert splits['train'] == ['p225/p225_002', 'p226/p226_001']
  assert splits['valid'] == ['p225/p225_001'] and splits['test'] == []
  (tmp_path / 'test.txt').write_text('p999_001.wav\n')
  with pytest.raises(FileNotFoundError, match="test.txt.*p999_001"):
    tfds_builders.split_from_lists(keys, tfds_builders.find_list_files(str(tmp_path)))
  (tmp_path / 'test.txt').write_text('p225_001.wav\n')
  with pytest.raises(ValueError, match='p225_001 is listed in both'):
    tfds_builders.split_from_lists(keys, tfds_builders.find_list_files(str(tmp_path)))
  (tmp_path / 'test.txt').unlink()
  with pytest.raises(FileNotFoundError, match=r"none for \['test'\]"):
    tfds_builders.find_list_files(str(tmp_path))


# ------------------------------------------------------------------------------ TIMIT

@pytest.fixture(scope='module')
def timit_dir(tmp_path_factory):
  """LDC-like TIMIT tree: TRAIN 8 speakers x 5 utterances (one RIFF, the rest SPHERE),
  TEST 2 x 5; returns (root, {key: raw float audio})."""
  root = tmp_path_factory.mktemp('timit')
  rng = np.random.default_rng(0)
  raw = {}
  speakers = [('TRAIN', dr, spk) for dr, spk in [
      ('DR1', 'FCJF0'), ('DR1', 'MDAB0'), ('DR2', 'FAEM0'), ('DR2', 'MARC0'),
      ('DR3', 'FDAW0'), ('DR3', 'MDPK0'), ('DR8', 'FBCG1'), ('DR8', 'MRRE0')]]
  speakers += [('TEST', 'DR1', 'FAKS0'), ('TEST', 'DR3', 'MDAC0')]
  for split, dr, spk in speakers:
    folder = root / split / dr / spk
    folder.mkdir(parents=True)
    (folder / 'SA1.TXT').write_text('0 46797 She had your dark suit.\n')  # ignored
    for sent in ('SA1', 'SA2', 'SI648', 'SX13', 'SX193'):
      pcm = random_pcm(rng, int(rng.integers(450, 2100)))
      key = f'{split}/{dr}/{spk}/{sent}'
      raw[key] = pcm / 32768.0
      if key == 'TRAIN/DR2/MARC0/SX13':
        soundfile.write(str(folder / f'{sent}.WAV'), pcm, 16000, subtype='PCM_16',
                        format='WAV')
      else:
        (folder / f'{sent}.WAV').write_bytes(sphere_bytes(pcm))
  return str(root), raw


@pytest.fixture(scope='module')
def timit(timit_dir, tmp_path_factory):
  root, raw = timit_dir
  data_dir = str(tmp_path_factory.mktemp('prepared'))
  data = speech.load_speech('timit', data_dir, manual_dir=root)
  data['data_dir'] = data_dir
  return data, raw


def test_timit_split_sizes_and_membership(timit):
  data, raw = timit
  train_keys = sorted(k for k in raw if k.startswith('TRAIN'))
  assert len(train_keys) == 40
  assert data['counts'] == {'train': 38, 'valid': 2, 'test': 10}
  # Hand-made split: sorted paths, random.Random(1234).shuffle, first int(0.05 N) valid.
  shuffled = list(train_keys)
  random.Random(1234).shuffle(shuffled)
  ids = data['ids']
  assert ids['valid'] == sorted(shuffled[:2])
  assert ids['train'] == sorted(shuffled[2:])
  assert ids['test'] == sorted(k for k in raw if k.startswith('TEST'))
  assert data['sort_eval'] and data['sample_rate'] == 16000


def test_timit_normalisation_and_test_truncation(timit):
  data, raw = timit
  ids = data['ids']
  train_raw = np.concatenate([raw[k] for k in ids['train']])
  assert data['mean'] == pytest.approx(train_raw.mean(), abs=1e-9)
  assert data['std'] == pytest.approx(train_raw.std(ddof=1), rel=1e-6)  # unbiased
  train = np.concatenate(data['train']).astype(np.float64)
  assert abs(train.mean()) < 1e-5 and train.std(ddof=1) == pytest.approx(1.0, rel=1e-5)
  for key, x in zip(ids['valid'], data['valid']):  # valid is not truncated
    np.testing.assert_allclose(x, (raw[key] - data['mean']) / data['std'], rtol=1e-5,
                               atol=1e-5)
  for key, x in zip(ids['test'], data['test']):
    assert x.dtype == np.float32 and x.ndim == 1
    assert x.size == len(raw[key]) // 200 * 200 and x.size % 200 == 0
    np.testing.assert_allclose(x, (raw[key][:x.size] - data['mean']) / data['std'],
                               rtol=1e-5, atol=1e-5)


def test_timit_feeds_batching(timit):
  data, _ = timit
  stream = batching.TrainStream(data['train'], batch_size=4, d_data=200, tgt_len=5)
  x, y = stream.batch(0)
  assert x.shape[1:] == (4, 200) and y.shape == x.shape
  chunks = list(batching.eval_chunks(data['test'], 4, 200, 5, sort=data['sort_eval']))
  scored = sum(c.mask.sum() for c in chunks)
  assert scored == sum(x.size // 200 - 1 for x in data['test'])


def test_no_tensorflow_imported(timit):
  assert 'tensorflow' not in sys.modules


def test_timit_is_reused_not_rebuilt(timit, timit_dir):
  data, _ = timit
  root, _ = timit_dir
  stamp = os.path.getmtime(os.path.join(data['path'], 'dataset_info.json'))
  # The raw corpus is not needed any more.
  again = speech.load_speech('timit', data['data_dir'], manual_dir=root + '_gone')
  assert os.path.getmtime(os.path.join(data['path'], 'dataset_info.json')) == stamp
  np.testing.assert_array_equal(again['test'][3], data['test'][3])


def test_stride_modes_through_load(timit, timit_dir):
  data, _ = timit
  root, _ = timit_dir
  data_dir = data['data_dir']
  for mode in transforms.STRIDE_MODES:
    strided = speech.load_speech('timit', data_dir, manual_dir=root, stride=50,
                                 stride_mode=mode)
    for x, s in zip(data['valid'], strided['valid']):
      np.testing.assert_array_equal(s, transforms.stride(x, 50, mode))
  with pytest.raises(ValueError, match='stride_mode'):
    speech.load_speech('timit', data_dir, manual_dir=root, stride_mode='phase')


def test_perm_timit(timit, timit_dir, tmp_path):
  data, _ = timit
  root, _ = timit_dir
  perm_data = speech.load_speech('perm_timit', str(tmp_path), manual_dir=root)
  perm = transforms.timit_permutation()
  assert perm_data['metadata']['perm'] == perm.tolist()
  with open(os.path.join(perm_data['path'], 'perm-200.txt')) as f:
    assert [int(v) for v in f.read().split()] == perm.tolist()
  assert (perm_data['mean'], perm_data['std']) == (data['mean'], data['std'])
  for split in tfds_builders.SPLITS:
    assert perm_data['counts'][split] == data['counts'][split]
    for x, p in zip(data[split], perm_data[split]):
      assert p.size % 200 == 0 and p.size == x.size // 200 * 200
      np.testing.assert_array_equal(p, x[:p.size].reshape(-1, 200)[:, perm].reshape(-1))


def test_missing_timit_names_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match=f'TIMIT not found.*{tmp_path / "nowhere"}'):
    speech.load_speech('timit', str(tmp_path), manual_dir=str(tmp_path / 'nowhere'))
  with pytest.raises(ValueError, match='unknown speech dataset'):
    speech.load_speech('librispeech', str(tmp_path))


# ------------------------------------------------------------------- VCTK / Blizzard

def write_wav(path, rng, n, rate):
  path.parent.mkdir(parents=True, exist_ok=True)
  t = np.arange(n) / rate
  x = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.01 * rng.normal(size=n) + 0.05
  soundfile.write(str(path), x, rate, subtype='PCM_16')
  return soundfile.read(str(path), dtype='float64')[0]


def test_vctk_resamples_and_follows_lists(tmp_path):
  rng = np.random.default_rng(1)
  root = tmp_path / 'VCTK-Corpus'
  raw = {}
  for spk in ('p225', 'p226'):
    for i in range(1, 5):
      raw[f'{spk}/{spk}_00{i}'] = write_wav(root / 'wav48' / spk / f'{spk}_00{i}.wav',
                                            rng, int(rng.integers(3000, 6000)), 48000)
  lists = {'train': ['p226_004', 'p225_001', 'p225_002', 'p226_001', 'p226_002'],
           'valid': ['p225_003', 'p226_003'], 'test': ['p225_004']}
  for split, names in lists.items():
    (root / f'{split}_files_list.txt').write_text(
        ''.join(f'{n[:4]}/{n}.wav\n' for n in names))
  data = speech.load_speech('vctk', str(tmp_path / 'prepared'), manual_dir=str(root))
  assert data['counts'] == {'train': 5, 'valid': 2, 'test': 1}
  assert data['sample_rate'] == 16000 and not data['sort_eval']
  resampled = {k: transforms.resample(v, 48000, 16000) for k, v in raw.items()}
  train_raw = np.concatenate([resampled[f'{n[:4]}/{n}'] for n in lists['train']])
  assert data['std'] == pytest.approx(train_raw.astype(np.float64).std(), rel=1e-6)
  for split, names in lists.items():  # list order is kept
    for name, x in zip(names, data[split]):
      expected = (resampled[f'{name[:4]}/{name}'] - data['mean']) / data['std']
      np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
  train = np.concatenate(data['train']).astype(np.float64)
  assert train.std() == pytest.approx(1.0, rel=1e-5)  # population std


def test_vctk_seeded_split_without_lists(tmp_path):
  rng = np.random.default_rng(2)
  root = tmp_path / 'vctk'
  for i in range(40):
    write_wav(root / 'wav48' / f'p{225 + i % 4}' / f'p{225 + i % 4}_{i:03d}.wav', rng, 600,
              48000)
  data = speech.load_speech('vctk', str(tmp_path / 'prepared'), manual_dir=str(root))
  n_valid, n_test = int(40 * 4424 / 44242), int(40 * 4425 / 44242)
  assert data['counts'] == {'train': 40 - n_valid - n_test, 'valid': n_valid,
                            'test': n_test}
  with pytest.raises(FileNotFoundError, match='VCTK not found.*wav48'):
    speech.load_speech('vctk', str(tmp_path / 'p2'), manual_dir=str(tmp_path / 'none'))


def test_blizzard_chapters_and_streaming(tmp_path):
  rng = np.random.default_rng(3)
  root = tmp_path / 'unsegmented'
  names = [f'CB-{book}-{ch:02d}' for book in ('EM', 'JE') for ch in range(1, 4)]
  for i, name in enumerate(names):  # one chapter at 22.05 kHz, the rest at 16 kHz
    write_wav(root / f'{name}.wav', rng, 4000 + 500 * i, 22050 if i == 0 else 16000)
  # An mp3 chapter (decoded by libsndfile >= 1.1), and an unconverted mp3 beside its
  # wav conversion (the wav is used; this mp3 is not even readable).
  x, _ = soundfile.read(str(root / f'{names[1]}.wav'))
  (root / f'{names[1]}.wav').unlink()
  soundfile.write(str(root / f'{names[1]}.mp3'), x, 16000, format='MP3')
  (root / f'{names[2]}.mp3').write_bytes(b'not an mp3')
  for split, chosen in [('train', names[:4]), ('valid', names[4:5]), ('test', names[5:])]:
    (root / f'{split}_file_list.txt').write_text(''.join(f'{n}.wav\n' for n in chosen))
  data_dir = str(tmp_path / 'prepared')
  data = speech.open_speech('blizzard', data_dir, manual_dir=str(root))
  assert (len(data.train), len(data.valid), len(data.test)) == (4, 1, 1)
  assert data.sample_rate == 16000 and not data.sort_eval
  assert len(data.train[0]) == int(np.ceil(4000 * 16000 / 22050))  # resampled
  mp3 = data.train[1] * data.std + data.mean
  np.testing.assert_allclose(mp3[2000:3000], x[2000:3000], atol=0.05)
  loaded = speech.load_speech('blizzard', data_dir, manual_dir=str(root))
  np.testing.assert_array_equal(loaded['test'][0], data.test[0])


# ------------------------------------------------------------- failures leave nothing

def test_corrupt_file_names_it_and_leaves_no_dataset(tmp_path):
  rng = np.random.default_rng(4)
  root = tmp_path / 'wavs'
  for i in range(6):
    write_wav(root / f'ok_{i}.wav', rng, 800, 8000)
  (root / 'broken_7.wav').write_bytes(b'RIFF\x10\x00\x00\x00WAVEjunkjunkjunk')
  data_dir = tmp_path / 'prepared'
  data_dir.mkdir()
  with pytest.raises(ValueError, match='broken_7.wav'):
    speech.load_speech('wav_folder', str(data_dir), manual_dir=str(root), valid_frac=0.2,
                       test_frac=0.2)
  assert os.listdir(data_dir) == []
  # Fixed corpus builds normally afterwards.
  (root / 'broken_7.wav').unlink()
  data = speech.load_speech('wav_folder', str(data_dir), manual_dir=str(root),
                            valid_frac=0.2, test_frac=0.2)
  assert data['counts'] == {'train': 4, 'valid': 1, 'test': 1}


def test_interrupted_build_leaves_no_dataset(tmp_path, monkeypatch):
  rng = np.random.default_rng(6)
  root = tmp_path / 'wavs'
  for i in range(8):
    write_wav(root / f'u{i}.wav', rng, 800, 8000)
  read, calls = tfds_builders.read_audio, []

  def interrupted_read(path):
    calls.append(path)
    if len(calls) == 4:
      raise KeyboardInterrupt
    return read(path)

  monkeypatch.setattr(tfds_builders, 'read_audio', interrupted_read)
  data_dir = tmp_path / 'prepared'
  with pytest.raises(KeyboardInterrupt):
    speech.load_speech('wav_folder', str(data_dir), manual_dir=str(root), valid_frac=0.25,
                       test_frac=0.25)
  assert len(calls) == 4
  assert not any(data_dir.rglob('*'))


def test_config_names_separate_variants():
  timit = tfds_builders.Timit.make_config('/x')
  assert timit.name == 'seed1234' and timit.unbiased_std and timit.sample_rate == 16000
  assert tfds_builders.Timit.make_config('/x', split_seed=7).name == 'seed7'
  other = tfds_builders.Timit.make_config('/x', valid_frac=0.1).name
  assert other.startswith('seed1234_') and other != timit.name
  folders = {tfds_builders.WavFolder.make_config(d).name for d in ('/a/wavs', '/b/wavs')}
  assert len(folders) == 2 and all(n.startswith('wavs_') for n in folders)


def test_mixed_sample_rates_need_a_target_rate(tmp_path):
  rng = np.random.default_rng(5)
  root = tmp_path / 'wavs'
  for i in range(4):
    write_wav(root / f'a{i}.wav', rng, 800, 8000 if i else 16000)
  with pytest.raises(ValueError, match='sample rate'):
    speech.load_speech('wav_folder', str(tmp_path / 'p'), manual_dir=str(root),
                       valid_frac=0.25, test_frac=0.25)
  data = speech.load_speech('wav_folder', str(tmp_path / 'p'), manual_dir=str(root),
                            valid_frac=0.25, test_frac=0.25, sample_rate=8000)
  assert data['sample_rate'] == 8000 and sum(data['counts'].values()) == 4


# ------------------------------------------------------------------- real audio: FSDD

@pytest.mark.skipif(not os.path.isdir(FSDD), reason=f'FSDD recordings not found at {FSDD} '
                    '(set REEXAM_SHARED_DATA to the shared data directory)')
def test_wav_folder_on_fsdd(tmp_path):
  data = speech.load_speech('wav_folder', str(tmp_path), manual_dir=FSDD)
  print('FSDD counts', data['counts'], 'mean', data['mean'], 'std', data['std'])
  assert data['counts'] == {'train': 2700, 'valid': 150, 'test': 150}
  assert data['sample_rate'] == 8000
  train = np.concatenate(data['train']).astype(np.float64)
  assert abs(train.mean()) < 1e-4 and train.std() == pytest.approx(1.0, rel=1e-4)
  stream = batching.TrainStream(data['train'], batch_size=8, d_data=200, tgt_len=40)
  assert stream.batch(0)[0].shape == (40, 8, 200)
  assert sum(c.mask.sum() for c in batching.eval_chunks(data['valid'], 8, 1, 2000)) == \
      sum(x.size - 1 for x in data['valid'])
