"""Data parallelism with one jit: a 1-D ('data',) mesh over all devices, parameters
replicated, batches sharded along their batch axis. The same code runs on one CPU,
several GPUs or a multi-host TPU pod (call `initialize()` first there)."""
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def initialize() -> None:
  """Starts multi-host JAX when a cluster launcher set the coordinator variables."""
  if any(k in os.environ for k in ('JAX_COORDINATOR_ADDRESS', 'SLURM_JOB_ID',
                                   'TPU_WORKER_HOSTNAMES')) and jax.process_count() == 1:
    try:
      jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:  # not actually a multi-process job
      print(f'jax.distributed.initialize() skipped: {e}')


def make_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axis: int = 1) -> NamedSharding:
  """Sharding of a time-major [T, B, ...] array over B."""
  spec = [None] * (batch_axis + 1)
  spec[batch_axis] = 'data'
  return NamedSharding(mesh, P(*spec))


def check_batch_size(batch_size: int, mesh: Mesh, flag: str = '--config.batch_size') -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f'{flag}={batch_size} is not divisible by the {n} devices of the mesh')


def put_batch(array: np.ndarray, mesh: Mesh, batch_axis: int = 1) -> jax.Array:
  """Places a global host batch on the mesh, each device taking its rows. Every process
  builds the same global batch (the data pipeline is deterministic), so this also works
  across hosts."""
  return jax.make_array_from_callback(array.shape, batch_sharding(mesh, batch_axis),
                                      lambda index: array[index])
