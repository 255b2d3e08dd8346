"""Step-wise models (reexam_jax.models.sampling: the models' `step` methods) against the
teacher-forced models, and the sampling command end to end (wav, MIDI, piano roll)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.io import wavfile

from reexam_jax import checkpointing
from reexam_jax import experiments
from reexam_jax import models
from reexam_jax import sample as sample_lib
from reexam_jax import state as state_lib
from reexam_jax.models import sampling

T, B = 3, 2

FAMILIES = [  # every model of the registry, every output model with both heads
    ('f_rnn', dict(d_data=3, n_layer=2, n_mix=2)),
    ('rnn_flat', dict(d_data=1, head='bernoulli')),
    ('f_srnn', dict(d_data=3, d_mlp=4, n_layer=2)),
    ('srnn_flat', dict(d_data=1, d_mlp=4)),
    ('rnn_hier', dict(d_data=3, n_low_layer=2, n_mix=2)),
    ('srnn_hier', dict(d_data=4, head='bernoulli')),
    ('rnn_hier_made', dict(d_data=3, n_low_layer=2, n_mix=2, d_nade=3)),
    ('srnn_hier_made', dict(d_data=4, d_nade=3, head='bernoulli')),
    ('delta_rnn_interleave', dict(d_data=5, chk_len=2, n_mix=2)),
    ('delta_rnn_random', dict(d_data=4, d_leak=2, head='bernoulli')),
    ('zf_f_srnn', dict(d_data=3, d_mlp=4)),
    ('zf_srnn_flat', dict(d_data=1, d_mlp=4, head='bernoulli')),
    ('f_rnn_hw', dict(d_data=3, n_layer=2, n_mix=2, head='handwriting')),
    ('rnn_hier_hw', dict(d_data=3, n_mix=2, head='handwriting', bivariate=True)),
    ('f_srnn_hw', dict(d_data=3, d_mlp=4, n_mix=2, head='handwriting', bivariate=True)),
    ('srnn_hier_hw', dict(d_data=3, d_mlp=4, n_mix=2, head='handwriting')),
    ('zf_f_srnn_hw', dict(d_data=3, d_mlp=4, n_mix=2, head='handwriting')),
]


def test_families_cover_the_registry():
  assert sorted(name for name, _ in FAMILIES) == sorted(experiments.MODELS)


def _config(name, **kw):
  return experiments.model_config(**{**dict(name=name, d_rnn=5, d_emb=4, d_lat=2, d_mlp=0,
                                            dropout=0.0), **kw})


def _model(name, **kw):
  cfg = _config(name, **kw)
  model = models.build_model(cfg)
  return model, jax.jit(models.init_params, static_argnums=(0, 2))(
      model, jax.random.key(1), cfg.d_data)


def _data(head, d, key=2):
  k = jax.random.key(key)
  if head == 'bernoulli':
    seq = jax.random.bernoulli(k, 0.4, (T + 1, B, d)).astype(jnp.float32)
  elif head == 'handwriting':  # (pen, dx, dy)
    pen = jax.random.bernoulli(k, 0.4, (T + 1, B, 1)).astype(jnp.float32)
    seq = jnp.concatenate([pen, jax.random.normal(jax.random.fold_in(k, 1), (T + 1, B, 2))],
                          -1)
  else:
    seq = jax.random.normal(k, (T + 1, B, d))
  return seq[:-1], seq[1:]


def _teacher_forced(model, params, x, y):
  """model.apply's log_prob [T, B, D] and the z [T, B, Z] it drew (the latent cores sow
  it; None for RNNs)."""
  out, inter = model.apply({'params': params}, x, y, rngs={'latent': jax.random.key(3)},
                           mutable=['intermediates'])
  z = inter.get('intermediates', {}).get('core', {}).get('z')
  return out['log_prob'], None if z is None else z[0]


def _step_wise(model, params, x, y, z):
  """(y read back [T, B, D], log-probs [T, B, D]) of y scored by sampling.step."""
  def body(carry, inp):
    x_t, y_t, z_t, t = inp
    carry, y_out, lp, _ = sampling.step(model, params, carry, x_t, jax.random.key(t),
                                        y=y_t, z=z_t)
    return carry, (y_out, lp)
  _, out = jax.lax.scan(body, sampling.initial_carry(model, x.shape[1]),
                        (x, y, z, jnp.arange(x.shape[0])))
  return out


@pytest.mark.parametrize('name,kw', FAMILIES, ids=[n for n, _ in FAMILIES])
def test_step_wise_reproduces_teacher_forced_log_prob(name, kw):
  model = models.build_model(_config(name, **kw))
  x, y = _data(kw.get('head', 'gmm'), kw['d_data'])

  @jax.jit  # one compilation per model: init, teacher-forced and step-wise scoring
  def run(x, y):
    params = models.init_params(model, jax.random.key(1), kw['d_data'])
    want, z = _teacher_forced(model, params, x, y)
    return want, z, _step_wise(model, params, x, y, z)

  want, z, (y_read, got) = run(x, y)
  assert (z is None) == (not models.is_latent(name))
  np.testing.assert_array_equal(y_read, y)  # scored, not sampled
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_joint_layernorm_made_refuses_to_sample():
  model = models.build_model(_config('rnn_hier_made', d_data=3, d_nade=3,
                                     joint_layernorm=True))
  shapes = jax.eval_shape(lambda: models.init_params(model, jax.random.key(1), 3))
  with pytest.raises(NotImplementedError, match='joint_layernorm'):
    sampling.sample.lower(model, shapes, jax.random.key(0), 2, 3)


def test_samples_follow_the_model_and_the_temperature():
  """A Bernoulli F-RNN whose output ignores h: samples must have the head's
  probabilities, sharpened by the temperature exactly as p^(1/tau)."""
  model, params = _model('f_rnn', d_data=2, head='bernoulli')
  crit = dict(kernel=jnp.zeros_like(params['output']['crit']['kernel']),
              bias=jnp.array([1.0, -2.0]))
  params = dict(params, output=dict(crit=crit))
  for tau in (1.0, 0.5):
    out = sampling.sample(model, params, jax.random.key(0), 512, 8, tau)
    want = jax.nn.sigmoid(crit['bias'] / tau)
    np.testing.assert_allclose(out['y'].mean((0, 1)), want, atol=0.03)
    lp = jnp.where(out['y'] > 0, jax.nn.log_sigmoid(crit['bias']),
                   jax.nn.log_sigmoid(-crit['bias'])).sum(-1)
    np.testing.assert_allclose(out['log_prob'], lp, rtol=1e-5)


def test_reset_every_matches_chunked_scoring():
  """With resets every L steps, the sample's log-probs are the chunked model's."""
  model, params = _model('f_rnn', d_data=2, n_mix=2)
  out = sampling.sample(model, params, jax.random.key(0), B, 4, 1.0, 2)
  seq = jnp.concatenate([jnp.zeros((1, B, 2)), out['y']])  # x0 = 0 then the samples
  apply = jax.jit(lambda x, y: model.apply({'params': params}, x, y)['log_prob'])
  chunks = [apply(seq[k:k + 2], seq[k + 1:k + 3]) for k in (0, 2)]
  np.testing.assert_allclose(out['log_prob'], jnp.concatenate(chunks).sum(-1), rtol=1e-5)


def _save_initial_checkpoint(config, workdir):
  """A checkpoint in training's layout holding the initial parameters."""
  model = models.build_model(config.model)
  params = models.init_params(model, jax.random.key(5), config.model.d_data)
  state = state_lib.initial_state(params, state_lib.make_optimizer(config))
  ckpt = checkpointing.Checkpointer(workdir)
  ckpt.save(1, state, params, dict(best_valid_ll=0.0, best_step=1))
  ckpt.wait()
  ckpt.close()


def test_sample_from_workdir_writes_midi_and_png(tmp_path):
  """Samples a MIDI model from a checkpoint; music21 reads the notes back."""
  config = experiments.get_config('muse', 'rnn_hier', 'd_rnn=4,d_emb=3,tgt_len=3')
  _save_initial_checkpoint(config, str(tmp_path))
  out = sample_lib.sample_workdir(config, str(tmp_path), num_samples=2, num_steps=5,
                                  temperature=0.8, seed=0)
  assert out['steps_per_s'] > 0 and len(out['log_prob']) == 2
  assert sorted(os.listdir(out['sample_dir'])) == [
      'sample_0.mid', 'sample_0.png', 'sample_1.mid', 'sample_1.png', 'samples.npz']
  roll = np.load(os.path.join(out['sample_dir'], 'samples.npz'))['y'][:, 0]  # [T, 88]
  assert set(np.unique(roll)) <= {0.0, 1.0} and roll.any()
  import music21  # pylint: disable=g-import-not-at-top
  score = music21.converter.parse(os.path.join(out['sample_dir'], 'sample_0.mid'))
  notes = [(n.offset * 2, n.quarterLength * 2, p.midi)  # in eighth-note steps
           for n in score.flatten().notes for p in n.pitches]
  want = []  # (onset, length, pitch) of every run of ones in the roll
  for pitch in range(88):
    on = np.diff(np.concatenate([[0], roll[:, pitch], [0]]))
    want += [(s, e - s, pitch + 21) for s, e in zip(np.nonzero(on > 0)[0],
                                                     np.nonzero(on < 0)[0])]
  assert sorted(notes) == sorted(want)


def test_sample_handwriting_writes_a_drawing(tmp_path, monkeypatch):
  """A stroke-3 model samples whole lines (no state resets) into one PNG."""
  config = experiments.get_config('stroke3', 'srnn_hier', 'd_rnn=4,d_emb=3,d_mlp=3,d_lat=2')
  _save_initial_checkpoint(config, str(tmp_path))
  monkeypatch.setattr(sample_lib.data_lib, 'handwriting_stats',
                      lambda config: (np.zeros(2), 1.0))
  out = sample_lib.sample_workdir(config, str(tmp_path), num_samples=2, num_steps=6)
  assert sorted(os.listdir(out['sample_dir'])) == ['samples.npz', 'samples.png']
  ys = np.load(os.path.join(out['sample_dir'], 'samples.npz'))['y']  # [T, N, 3]
  assert ys.shape == (6, 2, 3) and set(np.unique(ys[..., 0])) <= {0.0, 1.0}


def test_write_wav_undoes_the_normalisation(tmp_path):
  audio = np.array([-3.0, 0.0, 0.5, 3.0], np.float32)  # normalised
  sample_lib.write_wav(str(tmp_path / 'a.wav'), audio, dict(mean=0.1, std=0.2,
                                                            sample_rate=8000))
  rate, pcm = wavfile.read(tmp_path / 'a.wav')
  assert rate == 8000 and pcm.dtype == np.int16
  np.testing.assert_array_equal(pcm, np.round(np.array([-0.5, 0.1, 0.2, 0.7]) * 32767))
  sample_lib.write_wav(str(tmp_path / 'b.wav'), audio, None, stride=2)
  rate, pcm = wavfile.read(tmp_path / 'b.wav')
  assert rate == 8000
  np.testing.assert_array_equal(pcm, [-32767, 0, 16384, 32767])
