"""The paper's experiments as ml_collections configs: one table of datasets, one of
models, merged by `get_config(dataset, model, arg)`.

Every `configs/<dataset>_<model>.py` file calls `get_config` with its cell of the paper;
hyperparameters are the authors' README flags (spec §9.2-9.3) on top of the domain
defaults (spec §7). `arg` is a comma-separated list of `key=value` overrides of model
fields, e.g. `configs/timit_delta_rnn_interleave.py:chk_len=4`.
"""
import ast
import os
from typing import Optional

import ml_collections

from reexam_jax import config_checks
from reexam_jax import errors

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

# dataset -> (domain, batch size, paper steps, eval every, how the reported LL is normalised)
# Normalisation (spec §5.2): 'sequence' = total / #sequences; an int n = total per
# element x n (1 = per sample, 8000 = per 8000 samples, 88 = per 88-note step).
DATASETS = {
    'timit': ('speech', 32, 40_000, 2000, 'sequence'),
    'perm_timit': ('speech', 32, 40_000, 2000, 'sequence'),
    'vctk': ('speech', 128, 80_000, 2000, 1),
    'blizzard': ('speech', 128, 160_000, 2000, 8000),
    'wav_folder': ('speech', 32, 40_000, 2000, 1),
    'fsdd': ('speech', 16, 600, 200, 1),  # wav_folder on the Free Spoken Digit Dataset
    'nottingham': ('midi', 16, 20_000, 500, 88),
    'muse': ('midi', 16, 20_000, 500, 88),
    'jsb': ('midi', 16, 20_000, 500, 88),
    'piano_midi': ('midi', 16, 20_000, 500, 88),
    'bach_music21': ('midi', 16, 20_000, 500, 88),
}

# Domain defaults of the reference's options.py (spec §7).
DOMAIN_DEFAULTS = {
    'speech': dict(d_rnn=750, d_emb=512, d_mlp=512, d_lat=256, n_mix=20, dropout=0.0, head='gmm',
                   kl_increment=5e-5),
    'midi': dict(d_rnn=256, d_emb=256, d_mlp=0, d_lat=256, n_mix=1, dropout=0.5, head='bernoulli',
                 kl_increment=1e-4),  # the MIDI code adds 1e-4 per step (paper: 5e-5)
}

# (domain, model) -> (tgt_len, model flags) from the authors' README (spec §9.2, §9.3).
MODEL_FLAGS = {
    ('speech', 'f_rnn'): (40, dict(d_data=200, n_layer=2, d_rnn=750)),
    ('speech', 'f_srnn'): (40, dict(d_data=200, d_rnn=825)),
    ('speech', 'rnn_hier'): (40, dict(d_data=200, d_rnn=700)),
    ('speech', 'srnn_hier'): (40, dict(d_data=200, d_rnn=660)),
    ('speech', 'rnn_flat'): (2000, dict(d_data=1, n_layer=2, d_rnn=1100)),
    ('speech', 'srnn_flat'): (2000, dict(d_data=1, d_rnn=825)),
    ('speech', 'delta_rnn_interleave'): (40, dict(d_data=200, n_layer=2, d_rnn=750,
                                                  chk_len=3)),
    ('speech', 'delta_rnn_random'): (40, dict(d_data=200, n_layer=2, d_rnn=750, d_leak=75)),
    ('midi', 'f_rnn'): (100, dict(d_data=88)),
    ('midi', 'f_srnn'): (100, dict(d_data=88)),
    ('midi', 'rnn_hier'): (100, dict(d_data=88, n_layer=2)),
    ('midi', 'srnn_hier'): (100, dict(d_data=88)),
    ('midi', 'rnn_flat'): (8800, dict(d_data=1, n_layer=3)),
    ('midi', 'srnn_flat'): (8800, dict(d_data=1)),
    ('midi', 'delta_rnn_random'): (100, dict(d_data=88, d_leak=11)),
}

# Perm-TIMIT's hier models use the masked-MLP low level (spec §9.2 rows 3c, 4c). The
# README's RNN-hier command omits --n_layer 3, which its parameter count needs (§11.2).
PERM_TIMIT_HIER = {
    'rnn_hier': ('rnn_hier_made', dict(d_data=200, d_rnn=512, d_emb=256, n_layer=3,
                                       n_low_layer=3, d_nade=64)),
    'srnn_hier': ('srnn_hier_made', dict(d_data=200, d_rnn=536, d_emb=256, d_mlp=256,
                                         d_lat=256, n_low_layer=3, d_nade=64)),
}


# FSDD (8 kHz spoken digits): small CPU-sized models for the real-audio check of the
# speech stack (docs/fsdd.md). 40-sample frames, 400-sample chunks for every model
# (flat: tgt_len 400), width 128; 600 steps of 16 x 400 samples.
FSDD_MODEL_FLAGS = {
    'f_rnn': 'd_data=40,tgt_len=10,eval_tgt_len=10,n_layer=2',
    'f_srnn': 'd_data=40,tgt_len=10,eval_tgt_len=10,d_mlp=128,d_lat=32',
    'rnn_hier': 'd_data=40,tgt_len=10,eval_tgt_len=10',
    'rnn_flat': 'd_data=1,tgt_len=400,eval_tgt_len=400,n_layer=2',
}
FSDD_COMMON = 'd_rnn=128,d_emb=128,log_every=50,checkpoint_every=200'


def default_data_dir(dataset: str) -> str:
  """$REEXAM_DATA_DIR/<dataset>, else ~/.cache/reexam_jax/<dataset>; FSDD's wavs are
  read from $REEXAM_SHARED_DATA/speech/fsdd/recordings (default ../shared/data)."""
  if dataset == 'fsdd':
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.environ.get('REEXAM_SHARED_DATA', os.path.join(repo, '..', 'shared', 'data'))
    return os.path.normpath(os.path.join(shared, 'speech', 'fsdd', 'recordings'))
  root = os.environ.get('REEXAM_DATA_DIR',
                        os.path.join(os.path.expanduser('~'), '.cache', 'reexam_jax'))
  return os.path.join(root, dataset)


def fsdd_config(model: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
  """A small `model` on FSDD; `arg` overrides as in get_config."""
  flags = ','.join([FSDD_MODEL_FLAGS[model], FSDD_COMMON])
  return get_config('fsdd', model, ','.join(filter(None, [flags, arg])))


def model_config(**overrides) -> ml_collections.ConfigDict:
  """Every model field, with the reference's speech defaults (spec §7)."""
  cfg = ml_collections.ConfigDict(dict(
      name='f_rnn',        # registry name, see reexam_jax/models/__init__.py
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
      head='gmm',          # 'gmm' (real values) or 'bernoulli' (binary)
      joint_layernorm=False,  # hier_made: the reference's leaky joint LayerNorm (§11.8)
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
  """The config of one cell of the paper's tables."""
  if dataset not in DATASETS:
    raise errors.UserError(f'unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}')
  domain, batch_size, num_steps, eval_every, normalisation = DATASETS[dataset]
  if (domain, model) not in MODEL_FLAGS:
    raise errors.UserError(f'no {model!r} model for {domain} data')
  defaults = dict(DOMAIN_DEFAULTS[domain])
  kl_increment = defaults.pop('kl_increment')
  tgt_len, flags = MODEL_FLAGS[(domain, model)]
  name = model
  if dataset == 'perm_timit' and model in PERM_TIMIT_HIER:
    name, flags = PERM_TIMIT_HIER[model]

  config = ml_collections.ConfigDict()
  config.dataset = dataset               # which loader (reexam_jax/data)
  config.data_dir = default_data_dir(dataset)  # where the data are (or are put)
  # speech: where the TFDS copy is prepared ('' = data_dir; FSDD: a cache, never the
  # shared corpus directory)
  config.prepared_dir = default_data_dir('fsdd_prepared') if dataset == 'fsdd' else ''
  config.max_files = 0                   # speech: seeded subset of the corpus (0 = all)
  config.stream_from_disk = dataset in ('vctk', 'blizzard')  # never hold the train set
  config.buffer_files = 0                # streamed training: files per buffer (0 = batch)
  config.stride = 1                      # speech flat models: down-sampling M (Table 2)
  config.stride_mode = 'all_phases'      # 'all_phases' (reference) | 'single_phase' (paper)
  config.max_pieces = 0                  # bach_music21: pieces to parse (0 = all)
  config.model = model_config(**{**defaults, **flags, 'name': name})
  config.seed = 1234                     # the reference's seed
  config.batch_size = batch_size         # global batch, split over devices
  config.tgt_len = tgt_len               # training chunk length (steps)
  config.eval_tgt_len = tgt_len          # evaluation chunk length (context resets)
  config.num_steps = num_steps           # optimiser steps; also the cosine horizon
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
  config.kl_increment = kl_increment     # KL weight added per step, capped at 1
  config.loss_elements = 88 if domain == 'midi' else 1  # training loss per this many elements
  config.normalisation = normalisation   # how test/valid LL are reported (spec §5.2)
  config.eval_every = eval_every         # steps between validation passes
  config.log_every = 100                 # steps between training-metric lines
  config.checkpoint_every = eval_every   # steps between checkpoints
  config.eval_batch_size = batch_size    # sequences per evaluation batch
  config.max_eval_batches = 0            # cap on evaluation batches (0 = all; for smoke runs)
  config.iwae_samples = 64               # importance samples for the test bound (latent)
  config.iwae_chunk = 8                  # importance samples evaluated at once
  config.progress_bar = True             # terminal progress bar (process 0 only)

  overrides = _parse_arg(arg)
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
  if 'd_data' in overrides:
    config.loss_elements = 88 if domain == 'midi' else 1  # training loss per this many elements
  config.lock()
  return config

