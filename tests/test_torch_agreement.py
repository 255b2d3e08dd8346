"""benchmarks/torch_agreement.py on a small batch: our F-RNN, F-SRNN and delta-RNN
(random split) losses and gradients equal the PyTorch yardstick's to float32 tolerance. Needs the `bench` extra
(torch) and shared/bench/torch_reference.py; skipped without them."""
import importlib.util
import os
import sys

import pytest

pytest.importorskip('torch')
BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks')
sys.path.insert(0, BENCH)  # the benchmarks import each other as top-level modules
_SPEC = importlib.util.spec_from_file_location(
    'torch_agreement', os.path.join(BENCH, 'torch_agreement.py'))
agreement = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(agreement)

from reexam_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.skipif(not os.path.exists(agreement.step_time.TORCH_REFERENCE),
                                reason='no shared/bench/torch_reference.py')


@pytest.fixture(scope='module')
def ref():
  return agreement.load_yardstick()


def test_our_path_names_every_layout():
  assert agreement.our_path('inp_emb.0.weight') == ('core', 'inp_emb', 'TorchDense_0',
                                                    'kernel')
  assert agreement.our_path('core.post.1.bias') == ('core', 'post', 'TorchDense_0', 'bias')
  assert agreement.our_path('core.lat_rnn.weight_hh_l0') == ('core', 'lat_rnn', 'layer_0',
                                                             'w_hh')
  assert agreement.our_path('rnn.bias_ih_l1') == ('core', 'rnn', 'layer_1', 'b_ih')
  assert agreement.our_path('crit.weight') == ('output', 'crit', 'kernel')
  assert agreement.our_path('crit_rest.bias') == ('output', 'crit_rest', 'bias')
  assert agreement.our_path('rest_hid.0.weight') == ('output', 'rest_dense_0', 'kernel')
  assert agreement.our_path('rest_hid.3.weight') == ('output', 'rest_dense_1', 'kernel')
  assert agreement.our_path('rest_hid.1.weight') == ('output', 'rest_norm_0', 'scale')
  assert agreement.our_path('rest_hid.4.bias') == ('output', 'rest_norm_1', 'bias')


@pytest.mark.parametrize('model', agreement.MODELS)
def test_small_batch_agrees(ref, model, capsys):
  assert agreement.compare(model, 2, 5, 0, ref), capsys.readouterr().out


def test_delta_split_order_is_caught(ref, monkeypatch):
  """The yardstick scores the split it is given: rest elements in another order than
  our crit_rest rows no longer agree."""
  our_split = agreement.our_split
  monkeypatch.setattr(agreement, 'our_split',
                      lambda model: (lambda leak, rest: (leak, rest[::-1]))(*our_split(model)))
  assert not agreement.compare('delta_rnn_random', 2, 5, 0, ref)


def test_schedules_agree(ref):
  assert agreement.compare_schedules(ref)


def test_kl_weight_offset_is_caught(ref, monkeypatch):
  kl_weight = train.kl_weight
  monkeypatch.setattr(train, 'kl_weight', lambda config, step: kl_weight(config, step) + 0.05)
  assert not agreement.compare('f_srnn', 2, 5, 0, ref)
  assert not agreement.compare_schedules(ref)
