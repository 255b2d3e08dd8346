"""The paper's experiments as ml_collections configs: tables of datasets, models and
the authors' training commands, merged by `get_config(dataset, model, arg)`.

Every `configs/<dataset>_<model>.py` file calls `get_config` with its cell of the paper;
hyperparameters are the authors' README flags (MODEL_FLAGS; docs/reference.md,
"Parameter counts") on top of the domain defaults (DOMAINS; docs/reference.md, "Training
schedule"). `arg` is a comma-separated list of `key=value` overrides of config or model
fields, e.g. `configs/timit_delta_rnn_interleave.py:chk_len=4`. A new dataset is one
DATASETS entry (with its own commands in `model_flags` where the domain's do not fit,
and a loader in reexam_jax/data for data none reads yet); a new combination of core and
output model is one MODELS entry.
"""
import ast
import dataclasses
import os
from typing import Any, Mapping, Optional, Union

import ml_collections

from reexam_jax import config_checks
from reexam_jax import errors


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A model of the paper: a high-level core and an output model (docs/reference.md,
  "Models"), and the rules that tie the output model to the core."""
  core: str        # 'rnn', or with stochastic latent variables 'srnn' (the paper's
                   # simplified SRNN) or 'zforce' (Z-forcing, Table 5); the handwriting
                   # forms 'hw_rnn' and 'hw_srnn' (docs/reference.md, "Models")
  output: str      # 'factorised', 'hier_lstm', 'hier_made', 'delta', or the handwriting
                   # (pen, dx, dy) outputs 'handwriting' and 'handwriting_hier'
  split: str = ''  # delta outputs: the leaked elements, 'interleave' (U) or 'random' (V)

  @property
  def latent(self) -> bool:
    """Stochastic latent variables: trained with KL annealing, reported as bounds."""
    return self.core in LATENT_CORES

  @property
  def handwriting(self) -> bool:
    """A (pen, dx, dy) output model of the handwriting domain."""
    return self.output in ('handwriting', 'handwriting_hier')

  def n_mix(self, cfg) -> int:
    """Mixture components of the output heads: cfg.n_mix, but one on speech/MIDI SRNN
    cores, whose outputs are one Gaussian per element given z (the handwriting SRNNs
    keep K)."""
    return 1 if self.latent and not self.handwriting else cfg.n_mix

  def n_low_layer(self, cfg) -> int:
    """Layers of the low level: cfg.n_low_layer, but srnn_hier's LSTM has one."""
    return 1 if self.latent and self.output == 'hier_lstm' else cfg.n_low_layer


LATENT_CORES = ('srnn', 'hw_srnn', 'zforce')

# Registry name (config.model.name) -> model; the comment is the paper's name.
MODELS = {
    'f_rnn': ModelSpec('rnn', 'factorised'),  # F-RNN
    'rnn_flat': ModelSpec('rnn', 'factorised'),  # RNN-flat (D = 1)
    'f_srnn': ModelSpec('srnn', 'factorised'),  # F-SRNN
    'srnn_flat': ModelSpec('srnn', 'factorised'),  # SRNN-flat (D = 1)
    'rnn_hier': ModelSpec('rnn', 'hier_lstm'),  # RNN-hier
    'srnn_hier': ModelSpec('srnn', 'hier_lstm'),  # SRNN-hier
    'rnn_hier_made': ModelSpec('rnn', 'hier_made'),  # RNN-hier of Perm-TIMIT
    'srnn_hier_made': ModelSpec('srnn', 'hier_made'),  # SRNN-hier of Perm-TIMIT
    'delta_rnn_interleave': ModelSpec('rnn', 'delta', split='interleave'),  # delta-RNN, U
    'delta_rnn_random': ModelSpec('rnn', 'delta', split='random'),  # delta-RNN, V
    'zf_f_srnn': ModelSpec('zforce', 'factorised'),  # Z-F-SRNN (Table 5)
    'zf_srnn_flat': ModelSpec('zforce', 'factorised'),  # Z-SRNN-flat (Table 5, D = 1)
    # Handwriting (IAM-OnDB column of Table 4): configs name them through HANDWRITING_FLAGS.
    'f_rnn_hw': ModelSpec('hw_rnn', 'handwriting'),  # F-RNN
    'rnn_hier_hw': ModelSpec('hw_rnn', 'handwriting_hier'),  # RNN-hier
    'f_srnn_hw': ModelSpec('hw_srnn', 'handwriting'),  # F-SRNN
    'srnn_hier_hw': ModelSpec('hw_srnn', 'handwriting_hier'),  # SRNN-hier
    'zf_f_srnn_hw': ModelSpec('zforce', 'handwriting'),  # the reference's srnn_zforce
}


@dataclasses.dataclass(frozen=True)
class Flags:
  """One training command of the authors' README: the training chunk length (steps)
  and the model fields it sets (`name` where the registry model is not the table's)."""
  tgt_len: int
  model: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Domain:
  """What the datasets of one domain share (the reference's options.py)."""
  model: Mapping[str, Any]  # model field defaults
  kl_increment: float       # KL weight added per training step, up to 1
  loss_elements: int        # the training loss is per this many elements


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One dataset: its domain, the paper's training schedule, how its LL is reported."""
  domain: str                     # a key of DOMAINS
  batch_size: int
  num_steps: int                  # optimiser steps; also the cosine horizon
  eval_every: int                 # steps between validation passes and checkpoints
  # How test/valid LL are reported (docs/reference.md, "Units and normalisation"):
  # 'sequence' = total / #sequences; an int n = total per element x n (1 = per sample,
  # 8000 = per 8000 samples, 88 = per 88-note step).
  normalisation: Union[str, int]
  stream_from_disk: bool = False  # too large to hold: trained one buffer at a time
  log_every: int = 100            # steps between training-metric lines
  # The dataset's own commands, used instead of its domain's MODEL_FLAGS.
  model_flags: Mapping[str, Flags] = dataclasses.field(default_factory=dict)
  # Trained and evaluated on whole sequences, zero-padded per batch with masks
  # (handwriting), instead of chunks of the concatenated stream.
  whole_sequences: bool = False
  # The split reported as "test": 'valid' where there is no test split (IAM-OnDB; the
  # paper's numbers are validation LL, docs/reference.md, "Evaluation").
  test_split: str = 'test'
  pad_multiple: int = 32  # whole sequences: padded lengths are multiples of this


# Paper Table 4 (test LL, higher is better; SRNN rows are ELBOs), for reports.
PAPER_TABLE4 = {
    'f_rnn': dict(timit=32745, vctk=0.786, blizzard=7610, muse=-6.991, nottingham=-3.400,
                  perm_timit=25679),
    'f_srnn': dict(timit=69223, vctk=2.383, blizzard=15258, muse=-6.438, nottingham=-2.811,
                   perm_timit=67613),
    'delta_rnn_random': dict(timit=66453, vctk=2.199, blizzard=14585, muse=-6.252,
                             nottingham=-2.834, perm_timit=61103),
    'rnn_flat': dict(timit=117721, vctk=3.2173, blizzard=22714, muse=-5.251,
                     nottingham=-2.180, perm_timit=15763),
    'srnn_flat': dict(timit=109284, vctk=3.2062, blizzard=22290, muse=-5.616,
                      nottingham=-2.324, perm_timit=14278),
    'rnn_hier': dict(timit=109641, vctk=3.1822, blizzard=21950, muse=-5.161,
                     nottingham=-2.028, perm_timit=95161),
    'srnn_hier': dict(timit=107912, vctk=3.1423, blizzard=21845, muse=-5.483,
                      nottingham=-2.065, perm_timit=94402),
}

# Domain defaults of the reference's options.py (docs/reference.md, "Models" and
# "Training schedule").
DOMAINS = {
    'speech': Domain(dict(d_rnn=750, d_emb=512, d_mlp=512, d_lat=256, n_mix=20, dropout=0.0,
                          head='gmm'), kl_increment=5e-5, loss_elements=1),
    # The MIDI code adds 1e-4 per step (paper: 5e-5).
    'midi': Domain(dict(d_rnn=256, d_emb=256, d_mlp=0, d_lat=256, n_mix=1, dropout=0.5,
                        head='bernoulli'), kl_increment=1e-4, loss_elements=88),
    # Any [T, D] sequences (array_folder): MIDI-sized models, a few mixture components;
    # d_data and head are fitted to the data (config.fit_model_to_data).
    'array': Domain(dict(d_rnn=256, d_emb=256, d_mlp=256, d_lat=64, n_mix=5, dropout=0.0,
                         head='gmm', d_data=8), kl_increment=1e-4, loss_elements=1),
    # (pen, dx, dy) steps; the loss is per valid step (the 3 elements summed).
    'handwriting': Domain(dict(d_data=3, d_rnn=128, d_emb=128, d_mlp=128, d_lat=128,
                               n_mix=5, dropout=0.5, head='handwriting'),
                          kl_increment=5e-5, loss_elements=3),
}

# (domain, model) -> the authors' README command (docs/reference.md, "Parameter counts").
MODEL_FLAGS = {
    ('speech', 'f_rnn'): Flags(40, dict(d_data=200, n_layer=2, d_rnn=750)),
    ('speech', 'f_srnn'): Flags(40, dict(d_data=200, d_rnn=825)),
    ('speech', 'rnn_hier'): Flags(40, dict(d_data=200, d_rnn=700)),
    ('speech', 'srnn_hier'): Flags(40, dict(d_data=200, d_rnn=660)),
    ('speech', 'rnn_flat'): Flags(2000, dict(d_data=1, n_layer=2, d_rnn=1100)),
    ('speech', 'srnn_flat'): Flags(2000, dict(d_data=1, d_rnn=825)),
    ('speech', 'delta_rnn_interleave'): Flags(40, dict(d_data=200, n_layer=2, d_rnn=750,
                                                       chk_len=3)),
    ('speech', 'delta_rnn_random'): Flags(40, dict(d_data=200, n_layer=2, d_rnn=750,
                                                   d_leak=75)),
    # Paper Table 5 has no command: widths for its counts, 17.44M and
    # 16.98M, at the speech defaults (docs/zforcing.md). zf_aux_weight (> 0: Goyal et
    # al.'s auxiliary cost, off in the paper's runs) is a field of the Z-forcing configs
    # only, so the config.json of every existing workdir stays valid.
    ('speech', 'zf_f_srnn'): Flags(40, dict(d_data=200, d_rnn=1016, zf_aux_weight=0.0)),
    ('speech', 'zf_srnn_flat'): Flags(1000, dict(d_data=1, d_rnn=1026, zf_aux_weight=0.0)),
    ('midi', 'f_rnn'): Flags(100, dict(d_data=88)),
    ('midi', 'f_srnn'): Flags(100, dict(d_data=88)),
    ('midi', 'rnn_hier'): Flags(100, dict(d_data=88, n_layer=2)),
    ('midi', 'srnn_hier'): Flags(100, dict(d_data=88)),
    ('midi', 'rnn_flat'): Flags(8800, dict(d_data=1, n_layer=3)),
    ('midi', 'srnn_flat'): Flags(8800, dict(d_data=1)),
    ('midi', 'delta_rnn_random'): Flags(100, dict(d_data=88, d_leak=11)),
    # array_folder at size=paper: the MIDI commands, D from the data.
    ('array', 'f_rnn'): Flags(100, {}),
    ('array', 'f_srnn'): Flags(100, {}),
    ('array', 'rnn_hier'): Flags(100, dict(n_layer=2)),
    ('array', 'srnn_hier'): Flags(100, {}),
    ('array', 'rnn_flat'): Flags(2000, dict(d_data=1, n_layer=3)),
    ('array', 'srnn_flat'): Flags(2000, dict(d_data=1)),
    ('array', 'rnn_hier_made'): Flags(100, dict(n_layer=2)),
    ('array', 'srnn_hier_made'): Flags(100, {}),
    ('array', 'delta_rnn_interleave'): Flags(100, dict(chk_len=2)),
    ('array', 'delta_rnn_random'): Flags(100, dict(d_leak=1)),
    ('array', 'zf_f_srnn'): Flags(100, {}),
    ('array', 'zf_srnn_flat'): Flags(2000, dict(d_data=1)),
}

# Perm-TIMIT's hier models use the masked-MLP low level; the README's RNN-hier command
# omits --n_layer 3, which its parameter count needs (docs/reference.md, "Parameter
# counts").
PERM_TIMIT_FLAGS = {
    'rnn_hier': Flags(40, dict(name='rnn_hier_made', d_data=200, d_rnn=512, d_emb=256,
                               n_layer=3, n_low_layer=3, d_nade=64)),
    'srnn_hier': Flags(40, dict(name='srnn_hier_made', d_data=200, d_rnn=536, d_emb=256,
                                d_mlp=256, d_lat=256, n_low_layer=3, d_nade=64)),
}

# FSDD (8 kHz spoken digits): small CPU-sized models for the real-audio check of the
# speech stack (docs/fsdd.md). 40-sample frames, 400-sample chunks for every model
# (flat: tgt_len 400), width 128; 600 steps of 16 x 400 samples.
FSDD_FLAGS = {
    'f_rnn': Flags(10, dict(d_data=40, d_rnn=128, d_emb=128, n_layer=2)),
    'f_srnn': Flags(10, dict(d_data=40, d_rnn=128, d_emb=128, d_mlp=128, d_lat=32)),
    'zf_f_srnn': Flags(10, dict(d_data=40, d_rnn=128, d_emb=128, d_mlp=128, d_lat=32,
                                zf_aux_weight=0.0)),
    'rnn_hier': Flags(10, dict(d_data=40, d_rnn=128, d_emb=128)),
    'rnn_flat': Flags(400, dict(d_data=1, d_rnn=128, d_emb=128, n_layer=2)),
}

# A user's own data (docs/own_data.md) at the default size=laptop: width 128 and short
# chunks, so a few hundred steps take minutes on one CPU core. Flat models read
# chunks of a few steps' elements.
LAPTOP_MIDI_FLAGS = {
    'f_rnn': Flags(50, dict(d_data=88, d_rnn=128, d_emb=128)),
    'f_srnn': Flags(50, dict(d_data=88, d_rnn=128, d_emb=128, d_lat=32)),
    'rnn_hier': Flags(50, dict(d_data=88, d_rnn=128, d_emb=128)),
    'rnn_flat': Flags(880, dict(d_data=1, d_rnn=128, d_emb=128, n_layer=2)),
}
LAPTOP_ARRAY_FLAGS = {
    'f_rnn': Flags(50, dict(d_rnn=128, d_emb=128)),
    'f_srnn': Flags(50, dict(d_rnn=128, d_emb=128, d_mlp=128, d_lat=32)),
    'rnn_hier': Flags(50, dict(d_rnn=128, d_emb=128)),
    'rnn_flat': Flags(200, dict(d_data=1, d_rnn=128, d_emb=128, n_layer=2)),
}

# The handwriting scripts of the reference (docs/reference.md, "Parameter counts"); the
# registry models are the handwriting ones. tgt_len is unused by training and
# evaluation (whole lines) and sets the default sample length (4 x tgt_len steps).
HANDWRITING_FLAGS = {
    'f_rnn': Flags(200, dict(name='f_rnn_hw', d_rnn=256, n_layer=2)),
    'rnn_hier': Flags(200, dict(name='rnn_hier_hw', d_rnn=256, n_layer=2, dropout=0.25)),
    'f_srnn': Flags(200, dict(name='f_srnn_hw', d_rnn=200, d_emb=150, d_mlp=150,
                              d_lat=150)),
    'srnn_hier': Flags(200, dict(name='srnn_hier_hw', d_rnn=200, d_emb=150, d_mlp=150,
                                 dropout=0.25)),
    'zf_f_srnn': Flags(200, dict(name='zf_f_srnn_hw', d_rnn=200, d_emb=150, d_mlp=150,
                                 d_lat=150, zf_aux_weight=0.0)),
}
# stroke-3 sketches (Omniglot: ~31 steps per character, 20x shorter than IAM-OnDB
# lines), sized for a CPU: the paper's models at width 64 (Z = 32), 2-layer RNNs and
# the scripts' dropouts; samples of 4 x 25 steps.
_SMALL = dict(d_rnn=64, d_emb=64, d_mlp=64, d_lat=32)
STROKE3_FLAGS = {
    'f_rnn': Flags(25, dict(_SMALL, name='f_rnn_hw', n_layer=2)),
    'rnn_hier': Flags(25, dict(_SMALL, name='rnn_hier_hw', n_layer=2, dropout=0.25)),
    'f_srnn': Flags(25, dict(_SMALL, name='f_srnn_hw')),
    'srnn_hier': Flags(25, dict(_SMALL, name='srnn_hier_hw', dropout=0.25)),
    'zf_f_srnn': Flags(25, dict(_SMALL, name='zf_f_srnn_hw', zf_aux_weight=0.0)),
}

# Name -> Dataset(domain, batch size, paper steps, eval every, normalisation, ...).
DATASETS = {
    'timit': Dataset('speech', 32, 40_000, 2000, 'sequence'),
    'perm_timit': Dataset('speech', 32, 40_000, 2000, 'sequence',
                          model_flags=PERM_TIMIT_FLAGS),
    'vctk': Dataset('speech', 128, 80_000, 2000, 1, stream_from_disk=True),
    'blizzard': Dataset('speech', 128, 160_000, 2000, 8000, stream_from_disk=True),
    'wav_folder': Dataset('speech', 16, 600, 200, 1, log_every=50, model_flags=FSDD_FLAGS),
    # wav_folder on the Free Spoken Digit Dataset
    'fsdd': Dataset('speech', 16, 600, 200, 1, log_every=50, model_flags=FSDD_FLAGS),
    'nottingham': Dataset('midi', 16, 20_000, 500, 88),
    'muse': Dataset('midi', 16, 20_000, 500, 88),
    'jsb': Dataset('midi', 16, 20_000, 500, 88),
    'piano_midi': Dataset('midi', 16, 20_000, 500, 88),
    'bach_music21': Dataset('midi', 16, 20_000, 500, 88),
    'iamondb': Dataset('handwriting', 32, 20_000, 300, 'sequence', log_every=30,
                       model_flags=HANDWRITING_FLAGS, whole_sequences=True,
                       test_split='valid'),
    # stroke-3 .npz files (e.g. Omniglot's 30,000 training characters), sized for a
    # CPU: 600 steps of 32 sequences, all padded to 160 steps (Omniglot's longest is
    # 157: one compiled shape; docs/handwriting.md).
    'stroke3': Dataset('handwriting', 32, 600, 300, 'sequence', log_every=50,
                       model_flags=STROKE3_FLAGS, whole_sequences=True, pad_multiple=160),
    'midi_folder': Dataset('midi', 16, 1000, 200, 88, log_every=50,
                           model_flags=LAPTOP_MIDI_FLAGS),
    # LL per value (element) of the standardised sequences
    'array_folder': Dataset('array', 16, 1000, 200, 1, log_every=50,
                            model_flags=LAPTOP_ARRAY_FLAGS),
}

# Own data at the config file argument size=paper: the paper's models and schedule of
# the domain (the DOMAINS defaults and MODEL_FLAGS commands).
PAPER_SIZE = {
    'wav_folder': Dataset('speech', 32, 40_000, 2000, 1),
    'midi_folder': Dataset('midi', 16, 20_000, 500, 88),
    'array_folder': Dataset('array', 16, 20_000, 500, 1),
}
SIZES = ('laptop', 'paper')

# The own-data datasets' reading options (their config fields; docs/own_data.md).
OWN_DATA_FIELDS = {
    'wav_folder': {},
    'midi_folder': dict(
        fps=0.0,                # frames per second; 0: the beat grid below
        steps_per_quarter=2,    # frames per quarter note (when fps is 0)
        valid_frac=0.1, test_frac=0.1),  # seeded split without list files
    'array_folder': dict(
        kind='auto',            # 'binary' (0/1, Bernoulli heads), 'real' (standardised
                                # per dimension, GMM heads) or 'auto' (from the data)
        fit_model_to_data=True,  # model.d_data := the data's D (flat models keep 1) and
                                 # model.head := bernoulli or gmm by kind, before a run
        valid_frac=0.1, test_frac=0.1),
}


# Public data sets found under $REEXAM_SHARED_DATA when it is set: the path in it.
SHARED_DATA = {
    'fsdd': os.path.join('speech', 'fsdd', 'recordings'),
    'stroke3': os.path.join('handwriting', 'omniglot_stroke3.npz'),
}


def default_data_dir(dataset: str) -> str:
  """$REEXAM_DATA_DIR/<dataset>, else ~/.cache/reexam_jax/<dataset>; with
  $REEXAM_SHARED_DATA set (a directory of public data sets), FSDD's wavs and the
  stroke-3 Omniglot file are read from their place in it (SHARED_DATA); own data
  (OWN_DATA_FIELDS) have no default: '' (--config.data_dir is required)."""
  if dataset in OWN_DATA_FIELDS:
    return ''
  if dataset in SHARED_DATA and os.environ.get('REEXAM_SHARED_DATA'):
    return os.path.join(os.environ['REEXAM_SHARED_DATA'], SHARED_DATA[dataset])
  root = os.environ.get('REEXAM_DATA_DIR',
                        os.path.join(os.path.expanduser('~'), '.cache', 'reexam_jax'))
  return os.path.join(root, dataset)


def model_config(**overrides) -> ml_collections.ConfigDict:
  """Every model field, with the reference's speech defaults (docs/reference.md,
  "Models")."""
  cfg = ml_collections.ConfigDict(dict(
      name='f_rnn',        # registry name, a key of MODELS
      d_data=200,          # D: elements per step (1 = flat)
      d_rnn=750,           # H: LSTM width
      d_emb=512,           # E: input embedding width (and low-level embedding)
      d_mlp=512,           # M: SRNN prior/posterior hidden width; 0 = single linear layer
      d_lat=256,           # Z: latent units per step
      n_mix=20,            # K: mixture components of RNN GMM heads (SRNN heads use 1)
      n_layer=1,           # high-level LSTM layers
      n_low_layer=1,       # low-level layers of hier models
      d_nade=16,           # masked-MLP width per element (hier_made)
      dropout=0.0,         # dropout rate everywhere the reference applies it
      head='gmm',          # 'gmm' (real values), 'bernoulli' (binary) or 'handwriting'
                           # ((pen, dx, dy): set by the handwriting domain)
      bivariate=False,     # handwriting: one correlated bivariate GMM for (dx, dy)
                           # instead of two 1-D ones (beyond the paper)
      joint_layernorm=False,  # hier_made: the reference's leaky joint LayerNorm
                              # (docs/reference.md, "Deviations and quirk flags")
      low_dropout='element',  # hier_lstm training masks: 'element' (reference) or 'step'
                              # (one mask per step: the input projection once per step)
      chk_len=2,           # delta-RNN interleave: U
      d_leak=11,           # delta-RNN random: V
      split_seed=-1,       # delta-RNN random: seed of the fixed split permutation
                           # (-1: the run's seed, so each training seed has its own)
      remat_chunk=0,       # >0: high-level LSTM activations recomputed in the backward
                           # pass per segment of this many steps (long flat sequences)
      lstm_impl='scan',    # high-level LSTMs: 'scan' (any device) or 'cudnn' (CUDA GPUs,
                           # jax.experimental.rnn; same numbers, tests/test_gpu_paths.py)
  ))
  cfg.update(overrides)
  return cfg


def _parse_arg(arg: Optional[str]) -> dict:
  """'a=1,b=x,c=False' -> {'a': 1, 'b': 'x', 'c': False} (Python literals, else strings)."""
  out = {}
  for item in filter(None, (arg or '').split(',')):
    if '=' not in item:
      raise errors.UserError(f'config file argument {item!r}: expected key=value')
    key, value = (part.strip() for part in item.split('=', 1))
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass  # a plain string, e.g. a path
    out[key] = value
  return out


def get_config(dataset: str, model: str, arg: Optional[str] = None
               ) -> ml_collections.ConfigDict:
  """The config of one cell of the paper's tables; own data (PAPER_SIZE) take the
  argument size=laptop (default) or size=paper."""
  if dataset not in DATASETS:
    raise errors.UserError(f'unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}')
  overrides = _parse_arg(arg)
  size = overrides.pop('size', 'laptop') if dataset in PAPER_SIZE else 'laptop'
  if size not in SIZES:
    raise errors.UserError(f'config file argument size={size}: choose one of {SIZES}')
  data = PAPER_SIZE[dataset] if size == 'paper' else DATASETS[dataset]
  domain = DOMAINS[data.domain]
  flags = data.model_flags.get(model) or MODEL_FLAGS.get((data.domain, model))
  if flags is None:
    raise errors.UserError(f'no {model!r} model for {data.domain} data')

  config = ml_collections.ConfigDict()
  config.dataset = dataset               # which loader (reexam_jax/data)
  config.data_dir = default_data_dir(dataset)  # where the data are (or are put)
  # speech: where the TFDS copy is prepared ('' = data_dir; wav_folder: a cache named
  # after data_dir, data.prepared_dir; FSDD: a cache, never the read-only corpus)
  config.prepared_dir = default_data_dir('fsdd_prepared') if dataset == 'fsdd' else ''
  config.max_files = 0                   # speech: seeded subset of the corpus (0 = all)
  config.stream_from_disk = data.stream_from_disk  # never hold the train set
  config.buffer_files = 0                # streamed training: files per buffer (0 = batch)
  config.stride = 1                      # speech flat models: down-sampling M (Table 2)
  config.stride_mode = 'all_phases'      # 'all_phases' (reference) | 'single_phase' (paper)
  config.max_pieces = 0                  # bach_music21: pieces to parse (0 = all)
  config.update(OWN_DATA_FIELDS.get(dataset, {}))  # own data: how the files are read
  config.model = model_config(**{**domain.model, 'name': model, **flags.model})
  config.seed = 1234                     # the reference's seed
  config.batch_size = data.batch_size    # global batch, split over devices
  config.tgt_len = flags.tgt_len         # training chunk length (steps)
  config.eval_tgt_len = flags.tgt_len    # evaluation chunk length (context resets)
  config.num_steps = data.num_steps      # optimiser steps; also the cosine horizon
  config.learning_rate = 1e-3            # Adam
  config.end_learning_rate = 1e-6        # cosine decay target
  config.grad_clip = 0.5                 # global-norm clipping
  config.skip_nonfinite = False          # True: skip (and count) steps with a non-finite
                                         # loss or gradient instead of stopping the run
  # Training matmuls (layers.PRECISIONS): 'default' (the platform's float32: TF32 on
  # recent GPUs), 'highest' (true float32) or 'BF16_BF16_F32' (bfloat16 operands,
  # float32 accumulation). Evaluation always uses true float32.
  config.matmul_precision = 'default'
  config.kl_init = 0.2                   # KL weight at step 1 (latent models)
  config.kl_increment = domain.kl_increment  # KL weight added per step, capped at 1
  config.loss_elements = domain.loss_elements  # training loss per this many elements
  config.normalisation = data.normalisation  # how test/valid LL are reported
  config.eval_every = data.eval_every    # steps between validation passes
  config.log_every = data.log_every      # steps between training-metric lines
  config.checkpoint_every = data.eval_every  # steps between checkpoints
  config.eval_batch_size = data.batch_size  # sequences per evaluation batch
  config.max_eval_batches = 0            # cap on evaluation batches (0 = all; for smoke runs)
  config.iwae_samples = 64               # importance samples for the test bound (latent)
  config.iwae_chunk = 8                  # importance samples evaluated at once
  config.progress_bar = True             # terminal progress bar (process 0 only)
  # Handwriting: train and evaluate on whole sequences, padded per batch with masks
  # (tgt_len and eval_tgt_len are then unused), to a multiple of pad_multiple steps
  # (fewer distinct shapes, fewer compilations).
  config.whole_sequences = data.whole_sequences
  config.pad_multiple = data.pad_multiple

  for key, value in overrides.items():
    fields = config.model if key in config.model else config
    if key not in fields:
      raise config_checks.unknown_field(key, [*config.model, *config],
                                        f'config file argument {key}={value}')
    try:
      fields[key] = value
    except TypeError as e:  # a value ml_collections cannot cast to the field's type
      raise errors.UserError(f'config file argument {key}={value}: expected '
                             f'{type(fields[key]).__name__}') from e
  config.lock()
  return config

