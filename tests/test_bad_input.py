"""Every bad input, as a real command line, ends in one line on stderr naming the flag,
field or file, exit code 2, and leaves the workdir and the data directory as they were
(not created, or byte-identical). Most cases fail before JAX is imported."""
import contextlib
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from cli_helpers import TINY, rolls, run_main, snapshot, write_mat

NOTTINGHAM = 'configs/nottingham_f_rnn.py'
GOOD = {}  # the data dir holds a good Nottingham.mat

# (case, arguments, what the data dir's Nottingham file holds: .mat splits to replace
# or (file name, bytes), the expected line); {run} is the workdir, {data} the data dir.
CASES = [
    ('unknown key', ['--config.no_such_key=1'], GOOD,
     "--config.no_such_key=1: the config has no field 'no_such_key'"),
    ('mistyped key', ['--config.batch_sise=8'], GOOD,
     "--config.batch_sise=8: the config has no field 'batch_sise'; did you mean batch_size?"),
    ('model key without model.', ['--config.d_rnn=8'], GOOD,
     "--config.d_rnn=8: the config has no field 'd_rnn'; did you mean model.d_rnn?"),
    ('wrong value type', ['--config.num_steps=abc'], GOOD,
     "flag --config.num_steps=abc: invalid literal for int() with base 10: 'abc'"),
    ('unknown key in the config file argument', [f'--config={NOTTINGHAM}:batch_sise=1'],
     GOOD, "config file argument batch_sise=1: the config has no field 'batch_sise'; "
     'did you mean batch_size?'),
    ('wrong type in the config file argument', [f'--config={NOTTINGHAM}:num_steps=abc'],
     GOOD, 'config file argument num_steps=abc: expected int'),
    ('batch_size=0', ['--config.batch_size=0'], GOOD, '--config.batch_size=0: must be > 0'),
    ('batch_size=-4', ['--config.batch_size=-4'], GOOD, '--config.batch_size=-4: must be > 0'),
    ('eval_batch_size=0', ['--config.eval_batch_size=0'], GOOD,
     '--config.eval_batch_size=0: must be > 0'),
    ('num_steps=0', ['--config.num_steps=0'], GOOD, '--config.num_steps=0: must be > 0'),
    ('tgt_len=0', ['--config.tgt_len=0'], GOOD, '--config.tgt_len=0: must be > 0'),
    ('eval_every=0', ['--config.eval_every=0'], GOOD, '--config.eval_every=0: must be > 0'),
    ('checkpoint_every=0', ['--config.checkpoint_every=0'], GOOD,
     '--config.checkpoint_every=0: must be > 0'),
    ('log_every=-1', ['--config.log_every=-1'], GOOD, '--config.log_every=-1: must be > 0'),
    ('missing config file', ['--config=configs/no_such.py'], GOOD,
     '--config=configs/no_such.py: no such file'),
    ('empty --config', ['--config='], GOOD, '--config=: no such file'),
    ('no --workdir', ['--workdir='], GOOD, '--workdir is required for --mode=train'),
    ('no --workdir for sample', ['--workdir=', '--mode=sample'], GOOD,
     '--workdir is required for --mode=sample'),
    ('unknown flag', ['--wrokdir=x'], GOOD,
     "Unknown command line flag 'wrokdir'. Did you mean: workdir ?"),
    ('unsafe --allow_config_change', ['--allow_config_change=num_steps'], GOOD,
     '--allow_config_change: num_steps may not change in a workdir (only log_every,'
     'progress_bar,checkpoint_every,eval_batch_size,iwae_chunk,iwae_samples,data_dir,'
     'prepared_dir); use a new --workdir'),
    ('eval without checkpoints', ['--mode=eval'], GOOD,
     '--workdir={run}: no checkpoints there (train first)'),
    # Found when the data are loaded, after JAX is imported.
    ('missing data dir', ['--config.data_dir={data}/missing'], GOOD,
     '--config.data_dir={data}/missing: no such directory'),
    ('d_data=7', ['--config.model.d_data=7'], GOOD,
     '--config.model.d_data=7: does not divide the 88 elements per step of the '
     'nottingham data'),
    ('empty .mat', [], ('Nottingham.mat', b''),
     '{data}/Nottingham.mat: not a readable .mat file (Mat file appears to be truncated)'),
    ('garbage .mat', [], ('Nottingham.mat', b'\x00garbage' * 40),
     '{data}/Nottingham.mat: not a readable .mat file (Mat 4 mopt wrong format, '
     'byteswapping problem?)'),
    ('.mat without testdata', [], dict(testdata=None),
     "{data}/Nottingham.mat: expected field 'testdata' (found ['traindata', 'validdata'])"),
    ('.mat of [T, 87] rolls', [], dict(validdata=[np.zeros((5, 87))]),
     '{data}/Nottingham.mat: validdata sequence 0: shape (5, 87), expected (T, 88)'),
    ('NaN in a roll', [], dict(traindata=rolls(2) + [np.full((4, 88), np.nan)]),
     '{data}/Nottingham.mat: traindata sequence 2: holds NaN or Inf'),
    ('empty split', [], dict(validdata=[]),
     '--config.data_dir={data}: the nottingham data have no valid sequences'),
    ('bad pickle', [], ('Nottingham.pickle', b'not a pickle'),
     "{data}/Nottingham.pickle: not a readable pickle (UnpicklingError: invalid load key, "
     "'n'.)"),
]


def _write_data(data_dir, content) -> None:
  os.makedirs(data_dir)
  if isinstance(content, tuple):
    name, raw = content
    (data_dir / name).write_bytes(raw)
  else:
    write_mat(data_dir / 'Nottingham.mat', **content)


def _assert_one_line_exit_2(out: subprocess.CompletedProcess, expected: str) -> None:
  assert out.returncode == 2, out.stderr[-3000:]
  assert out.stderr.splitlines() == [f'error: {expected}'], out.stderr[-3000:]


@pytest.mark.parametrize('args,data_content,expected', [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, data_content, expected):
  run, data = tmp_path / 'run', tmp_path / 'data'
  _write_data(data, data_content)
  before = snapshot(tmp_path)
  out = run_main(f'--config={NOTTINGHAM}', f'--workdir={run}', *TINY,
                 f'--config.data_dir={data}', *[a.format(run=run, data=data) for a in args])
  _assert_one_line_exit_2(out, expected.format(run=run, data=data))
  assert snapshot(tmp_path) == before  # no workdir made, data untouched


@contextlib.contextmanager
def _mounted_tmpfs(path, size: str):
  """A tmpfs of `size` mounted at path (root only; the test is skipped elsewhere)."""
  os.makedirs(path, exist_ok=True)
  if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}',
                                          'tmpfs', str(path)]).returncode:
    pytest.skip('needs root to mount a tmpfs')
  try:
    yield path
  finally:
    subprocess.run(['umount', str(path)], check=True)


def test_read_only_workdir(tmp_path):
  """A workdir on a read-only file system is refused before anything is read."""
  with _mounted_tmpfs(tmp_path / 'ro', '1m') as run:
    (run / 'notes.txt').write_text('kept')
    subprocess.run(['mount', '-o', 'remount,ro', str(run)], check=True)
    before = snapshot(run)
    out = run_main(f'--config={NOTTINGHAM}', f'--workdir={run}', *TINY)
    _assert_one_line_exit_2(out, f'--workdir={run}: {run} is not writable')
    assert snapshot(run) == before


def test_workdir_that_is_a_file(tmp_path):
  run = tmp_path / 'run'
  run.write_text('not a directory')
  out = run_main(f'--config={NOTTINGHAM}', f'--workdir={run}', *TINY)
  _assert_one_line_exit_2(out, f'--workdir={run}: {run} is not a directory')
  assert run.read_text() == 'not a directory'


def _fill(directory) -> None:
  """Fills directory's file system with one file, to the last byte."""
  with open(directory / 'filler', 'wb', buffering=0) as f, contextlib.suppress(OSError):
    while True:
      f.write(b'\0' * 4096)


def test_full_disk_keeps_the_last_checkpoint(tmp_path):
  """A checkpoint save that meets a full disk ends the run with one line (exit 2); the
  checkpoint before it stays the latest, and once there is room the same command
  resumes from it to the results of a run that never stopped."""
  data = tmp_path / 'data'
  _write_data(data, GOOD)
  with _mounted_tmpfs(tmp_path / 'disk', '16m') as disk:
    run = disk / 'run'
    command = (f'--config={NOTTINGHAM}', f'--workdir={run}', *TINY)
    first = run_main(*command, data_dir=data)
    assert first.returncode == 0, first.stderr[-3000:]
    uninterrupted = json.loads((run / 'results.json').read_text())
    shutil.rmtree(run / 'checkpoints' / '4')  # as if the run had stopped after step 2
    os.remove(run / 'results.json')

    _fill(disk)
    full = run_main(*command, data_dir=data)
    _assert_one_line_exit_2(full, f'{run}/checkpoints: No space left on device')
    assert '2' in os.listdir(run / 'checkpoints') and not (run / 'results.json').exists()

    os.remove(disk / 'filler')
    resumed = run_main(*command, data_dir=data)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run / 'results.json').read_text())
    for key in ('valid_ll', 'test_ll', 'best_step'):
      assert results[key] == uninterrupted[key], key
