"""Model FLOPs of one training step, from the architecture (no tracing, no jax): the
model registry `experiments.MODELS` says which core and output model a config runs.

Conventions:
  * A matmul [M, K] x [K, N] costs 2*M*N*K FLOPs (one multiply and one add per term);
    einsums with batch dimensions count the same way per batch entry.
  * Only matmuls are counted. Element-wise work (gate non-linearities, the cell
    update, dropout, likelihoods, LayerNorm, Adam) is left out, as in the usual
    "model FLOPs" of MFU figures. On CPU it is far from free (it dominates
    the hier low level), so a low fraction of peak is expected for small widths.
  * Training step = forward + backward = 3 x forward: each matmul's backward is two
    matmuls of the same size (d input, d weight). This slightly over-counts the
    input embedding of the data (its d input is never needed).
  * Biases are additions: not counted.

Notation: T steps (tgt_len), B sequences, N = T*B, D elements per step, E embedding,
H LSTM width, Z latent units, M SRNN MLP width (0: single linear layer), K mixture
components, L high-level layers.

An LSTM layer over S sequences of length T with input width I costs
  input projection  2*T*S*I*4H   (x_t W_ih^T for all t: one big matmul)
  recurrence        2*T*S*H*4H   (h_{t-1} W_hh^T, serial over t).

Per model (forward):
  core RNN     inp_emb 2*N*D*E + LSTM(T, B, I=E, L layers; layers > 1 have I=H)
  core SRNN    inp_emb on x and y 2 x 2*N*D*E, fwd and bwd LSTM(I=E, L layers),
               prior 2*N*H*M + 2*N*M*2Z (M = 0: 2*N*H*2Z), posterior the same with
               input 2H, lat_rnn LSTM(I=H+Z, 1 layer)
  core Z-forc. inp_emb on x and y 2 x 2*N*D*E, bwd LSTM(I=E, 1 layer), prior and
               posterior as SRNN (M > 0), gen_mod 2*N*Z*M, the cell LSTM(I=E+M, 1
               layer) stepped one t at a time (the same FLOPs, serial)
  factorised   Bernoulli 2*N*H*D; GMM 3 x 2*N*H*D*K (K = 1 on SRNN cores)
  hier (LSTM)  emb_low 2*D*N*E, low LSTM(T=D, S=N, I=E+H, n_low layers), head per
               position: Bernoulli 2*D*N*H, GMM 3 x 2*D*N*H*K
  hier (MADE)  layer 0 2*N*D*(H+D-1)*d_nade (the masked weight runs dense), later
               layers 2*N*D*d_nade^2, per-element head on d_nade
  delta        head on V leaked elements, rest MLP 2*N*(H+V)*H + 2*N*H*H, head on the
               D-V others (V = d_leak, or ceil(D/chk_len) interleaved)

Hier models (low-level LSTM over the D elements of each step, T*B sequences): the
reference concatenates [emb_low(y_ti), h_t] at every position, so its first low layer
costs 2*D*N*(E+H)*4H for the input projection: the h_t part is recomputed D times.
`forward_flops(..., restructured=True)` counts what our HierLSTM runs when one dropout
mask serves all positions of a step (evaluation, dropout 0, or low_dropout='step'):
the h_t part once per step, 2*N*H*4H, two [N, E] x [E, 4H] matmuls for the scalar
embedding's slope and offset, and a rank-1 broadcast 2*D*N*4H instead of a matmul.
`train_step_flops` reports the reference's (literal) count as the model FLOPs and
the restructured one as `executed` when our training step runs it.
"""
import math

from reexam_jax import experiments

# Terms that are rank-1 "matmuls" (inner size 1): the reference runs emb_low as
# Linear(1, E); our implementation computes these as broadcast multiply-adds.
BROADCAST_TERMS = ('low_emb', 'low_rank1')


def matmul(m: int, n: int, k: int) -> int:
  """FLOPs of an [m, k] x [k, n] matmul."""
  return 2 * m * n * k


def lstm(prefix: str, length: int, seqs: int, d_in: int, hid: int, layers: int) -> dict:
  """Forward FLOPs of an LSTM stack: input projections and recurrences, all layers."""
  rows = length * seqs  # every (step, sequence) pair is one row of each matmul
  return {f'{prefix}.input': sum(matmul(rows, 4 * hid, d_in if l == 0 else hid)
                                 for l in range(layers)),
          f'{prefix}.recurrence': layers * matmul(rows, 4 * hid, hid)}


def head(kind: str, rows: int, d_inp: int, elems: int, n_mix: int) -> int:
  """Output head on `rows` inputs of width d_inp predicting `elems` elements:
  Bernoulli, one logit per element; GMM, three [d_inp, D, K] maps (mean, log std,
  logits). Per-element heads (hier, MADE) cost the same per (row, element)."""
  outputs = elems if kind == 'bernoulli' else 3 * elems * n_mix
  return matmul(rows, outputs, d_inp)


def mlp(rows: int, d_in: int, d_hidden: int, d_out: int) -> int:
  """SRNN prior/posterior: Linear(d_in, M) -> LReLU -> Linear(M, d_out), or one
  Linear(d_in, d_out) when M = 0 (MIDI)."""
  if d_hidden:
    return matmul(rows, d_hidden, d_in) + matmul(rows, d_out, d_hidden)
  return matmul(rows, d_out, d_in)


def forward_flops(config, batch: int = None, restructured: bool = False) -> dict:
  """Forward matmul FLOPs of one training batch, per component."""
  m = config.model
  t, b = config.tgt_len, batch or config.batch_size
  n, d, e, h = t * b, m.d_data, m.d_emb, m.d_rnn
  spec = experiments.MODELS[m.name]
  n_mix = spec.n_mix(m)
  out = {}

  # High-level core.
  if spec.core == 'zforce':
    z = m.d_lat
    out['inp_emb'] = 2 * matmul(n, e, d)  # Linear(D, E), shared by x and y
    out.update(lstm('bwd_rnn', t, b, e, h, 1))
    out['prior'] = mlp(n, h, m.d_mlp, 2 * z)  # f_t -> (mu, logvar)
    out['post'] = mlp(n, 2 * h, m.d_mlp, 2 * z)  # [bwd_t, f_t] -> (mu, logvar)
    out['gen_mod'] = matmul(n, m.d_mlp, z)  # Linear(Z, M)
    out.update(lstm('fwd_cell', t, b, e + m.d_mlp, h, 1))  # [emb(x_t), gen_mod(z_t)]
  elif spec.latent:
    z = m.d_lat
    out['inp_emb'] = 2 * matmul(n, e, d)  # Linear(D, E), shared by x and y
    out.update(lstm('fwd_rnn', t, b, e, h, m.n_layer))
    out.update(lstm('bwd_rnn', t, b, e, h, m.n_layer))
    out['prior'] = mlp(n, h, m.d_mlp, 2 * z)  # fwd_t -> (mu, logvar)
    out['post'] = mlp(n, 2 * h, m.d_mlp, 2 * z)  # [bwd_t, fwd_t] -> (mu, logvar)
    out.update(lstm('lat_rnn', t, b, h + z, h, 1))  # [fwd_t, z_t] -> h_t
  else:
    out['inp_emb'] = matmul(n, e, d)
    out.update(lstm('rnn', t, b, e, h, m.n_layer))

  # Output model.
  if spec.output == 'hier_lstm':  # low-level LSTM: T*B sequences of length D
    n_low = spec.n_low_layer(m)
    if restructured:
      out['low_emb_proj'] = 2 * matmul(n, 4 * h, e)  # slope and offset of the emb part
      out['low_ctx_proj'] = matmul(n, 4 * h, h)  # h_t W_ih[:, E:]^T, once per step
      out['low_rank1'] = matmul(d * n, 4 * h, 1)  # y_ti * slope + offset
      out['rnn_low.input'] = (n_low - 1) * matmul(d * n, 4 * h, h)  # layers above
      out['rnn_low.recurrence'] = n_low * matmul(d * n, 4 * h, h)
    else:
      out['low_emb'] = matmul(d * n, e, 1)  # Linear(1, E) at every position
      out.update(lstm('rnn_low', d, n, e + h, h, n_low))
    # MIDI: one Bernoulli head shared by positions; speech: a GMM head per position.
    out['head'] = head(m.head, d * n, h, 1, n_mix)
  elif spec.output == 'hier_made':
    k = m.d_nade
    out['made'] = (matmul(n * d, k, h + d - 1)  # masked W0, run dense: [D, H+D-1, k]
                   + (spec.n_low_layer(m) - 1) * matmul(n * d, k, k))  # per-block [k, k]
    out['head'] = head(m.head, n * d, k, 1, n_mix)
  elif spec.output == 'delta':
    if spec.split == 'interleave':
      v = math.ceil(d / m.chk_len)  # every chk_len-th element is leaked
    else:
      v = m.d_leak
    out['head_leak'] = head(m.head, n, h, v, n_mix)
    out['rest_mlp'] = matmul(n, h, h + v) + matmul(n, h, h)  # two bias-free layers
    out['head_rest'] = head(m.head, n, h, d - v, n_mix)
  else:  # factorised (F-RNN, F-SRNN, flat with D = 1)
    out['head'] = head(m.head, n, h, d, n_mix)
  return out


def runs_restructured(config) -> bool:
  """Whether our training step runs the hier low level restructured (one dropout
  mask per step, so the h_t part of the input projection is computed once)."""
  m = config.model
  return (experiments.MODELS[m.name].output == 'hier_lstm'
          and (m.dropout == 0.0 or m.low_dropout == 'step'))


def train_step_flops(config, batch: int = None) -> dict:
  """Model FLOPs of one training step (3 x forward matmuls, see the module doc).

  Returns total (the reference's algorithm: literal hier low level), breakdown
  (forward FLOPs per component), and executed (3 x forward of what our training step
  runs: differs from total only for hier models with shared low-level masks).
  """
  breakdown = forward_flops(config, batch)
  total = 3 * sum(breakdown.values())
  executed = total
  if runs_restructured(config):
    executed = 3 * sum(forward_flops(config, batch, restructured=True).values())
  return dict(total=total, breakdown=breakdown, executed=executed)


if __name__ == '__main__':
  import argparse  # pylint: disable=g-import-not-at-top
  import step_time  # pylint: disable=g-import-not-at-top

  ap = argparse.ArgumentParser(description='Prints the model FLOPs of configs.')
  ap.add_argument('configs', nargs='+', help='config files, path[:arg]')
  ap.add_argument('--batch', type=int, default=None, help='default: the config batch')
  args = ap.parse_args()
  for path in args.configs:
    res = train_step_flops(step_time.load_config(path), args.batch)
    parts = ', '.join(f'{k} {v / 1e9:.3f}' for k, v in res['breakdown'].items())
    print(f'{path}: train step {res["total"] / 1e9:.3f} GFLOP '
          f'(executed {res["executed"] / 1e9:.3f}); forward GFLOP: {parts}')
