"""reexam_jax: density estimation of multivariate sequences (Dai et al. 2019).

`reexam_jax.load(workdir)` gives a trained run to Python (reexam_jax/api.py); the
command line is `python -m reexam_jax.main`."""


def load(workdir: str):
  """The trained run in workdir: `.config`, `.log_prob(sequences)`, `.sample(num,
  steps, temperature)` (reexam_jax/api.py). Imported on first use, so that
  `import reexam_jax` stays light."""
  from reexam_jax import api  # pylint: disable=g-import-not-at-top
  return api.load(workdir)
