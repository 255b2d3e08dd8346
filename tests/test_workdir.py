"""A workdir knows its config: training records it (config.json and every checkpoint
record), and train, eval and sample with another config stop before changing a byte;
fields that may safely differ need --allow_config_change."""
import json
import shutil

import ml_collections
import orbax.checkpoint as ocp
import pytest

from cli_helpers import TINY, run_main, snapshot, write_mat
from reexam_jax import errors
from reexam_jax import workdir

NOTTINGHAM = 'configs/nottingham_f_rnn.py'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(workdir, data dir) of a finished tiny Nottingham run, made by the command line."""
  root = tmp_path_factory.mktemp('trained')
  data, run = root / 'data', root / 'run'
  data.mkdir()
  write_mat(data / 'Nottingham.mat')
  out = run_main(f'--config={NOTTINGHAM}', f'--workdir={run}', *TINY, data_dir=data)
  assert out.returncode == 0, out.stderr[-3000:]
  return run, data


def test_training_records_its_config(trained):
  run, data = trained
  text = (run / 'config.json').read_text()
  recorded = json.loads(text)
  assert text == json.dumps(recorded, indent=2, sort_keys=True)
  assert (recorded['dataset'], recorded['data_dir'], recorded['model']['d_rnn']) == (
      'nottingham', str(data), 8)
  manager = ocp.CheckpointManager(run / 'checkpoints', item_names=('record',))
  for step in (2, 4):
    record = manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))
    assert record['record']['config'] == recorded


def test_quickstart_on_a_nottingham_workdir_is_refused(trained):
  """The same model on another dataset used to resume, train nothing and report the
  Nottingham parameters' score on the chorales."""
  run, data = trained
  before = snapshot(run)
  out = run_main('--config=configs/quickstart.py', f'--workdir={run}', *TINY, data_dir=data)
  assert out.returncode == 2
  assert out.stderr.splitlines() == [
      f'error: --workdir={run} holds a run of another config (config.json): dataset '
      '"nottingham" -> "bach_music21"; dataset may not change in a workdir: use a new '
      '--workdir']
  assert snapshot(run) == before


@pytest.mark.parametrize('mode', ['train', 'eval', 'sample'])
def test_every_mode_refuses_another_model(trained, mode):
  run, data = trained
  before = snapshot(run)
  out = run_main(f'--config={NOTTINGHAM}', f'--workdir={run}', f'--mode={mode}', *TINY,
                 '--config.model.d_rnn=16', data_dir=data)
  assert out.returncode == 2
  assert out.stderr.splitlines() == [
      f'error: --workdir={run} holds a run of another config (config.json): model.d_rnn '
      '8 -> 16; model.d_rnn may not change in a workdir: use a new --workdir']
  assert snapshot(run) == before


def test_a_safe_change_needs_the_flag(trained, tmp_path):
  run = tmp_path / 'run'
  shutil.copytree(trained[0], run)
  command = (f'--config={NOTTINGHAM}', f'--workdir={run}', *TINY, '--config.log_every=1')
  before = snapshot(run)
  refused = run_main(*command, data_dir=trained[1])
  assert refused.returncode == 2
  assert refused.stderr.splitlines() == [
      f'error: --workdir={run} holds a run of another config (config.json): log_every 2 '
      '-> 1; if that is meant, pass --allow_config_change=log_every']
  assert snapshot(run) == before

  allowed = run_main(*command, '--allow_config_change=log_every', data_dir=trained[1])
  assert allowed.returncode == 0, allowed.stderr[-3000:]
  assert json.loads((run / 'config.json').read_text())['log_every'] == 1


def _config(**fields) -> ml_collections.ConfigDict:
  base = dict(dataset='nottingham', num_steps=4, log_every=2, model=dict(d_rnn=8))
  base.update(fields)
  return ml_collections.ConfigDict(base)


def test_differences_are_dotted_and_sorted():
  old, new = _config().to_dict(), _config(log_every=1, model=dict(d_rnn=16, d_emb=8))
  assert workdir.differences(old, workdir.config_dict(new)) == [
      ('log_every', 2, 1), ('model.d_emb', workdir._ABSENT, 8), ('model.d_rnn', 8, 16)]


def test_allowed_fields_only_pass_when_all_differences_are_allowed(tmp_path):
  workdir.write_config(_config(), tmp_path)
  workdir.check_config(_config(), tmp_path, allowed=())
  workdir.check_config(_config(log_every=1), tmp_path, allowed=('log_every',))
  with pytest.raises(errors.UserError, match='pass --allow_config_change=log_every$'):
    workdir.check_config(_config(log_every=1), tmp_path, allowed=())
  with pytest.raises(errors.UserError, match='num_steps may not change in a workdir'):
    workdir.check_config(_config(log_every=1, num_steps=8), tmp_path)


def test_a_workdir_without_config_json_records_the_current_config(tmp_path):
  """Checkpoints from a version that wrote no config.json: not checked; training
  records its config there from then on."""
  (tmp_path / 'checkpoints').mkdir()
  workdir.check_config(_config(), tmp_path)
  workdir.write_config(_config(), tmp_path)
  assert json.loads((tmp_path / 'config.json').read_text()) == _config().to_dict()
  with pytest.raises(errors.UserError, match='num_steps 4 -> 8'):
    workdir.check_config(_config(num_steps=8), tmp_path)
