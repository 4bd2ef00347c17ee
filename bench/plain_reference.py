#!/usr/bin/python3
"""An independent reference for cterp's "plain" TopK SAE on the toy: the same algorithm in numpy
(dense), on data drawn by numpy from the same ground-truth features and probabilities.

Plain = TopK SAE, d_sae 1024, k 8, batch 4096, Adam(0.9, 0.999, 1e-8) lr 1e-3 constant, global
grad-norm clip 1.0, W_dec rows random with norm 0.1, W_enc = W_dec^T, biases 0, loss = mean over
tokens of ||x_hat - x||^2. Prints MMCS every 500 steps and at the end.

    build/cterp train --toy --toy-save-features /tmp/feat.npy
    /usr/bin/python3 bench/plain_reference.py /tmp/feat.npy [steps] [seed]
Compare with: build/cterp train --toy --steps 3000 --batch 4096 --lr 1e-3 --use-auxk false
              --b-dec-init zeros --lr-warm-up-steps 0 --lr-scheduler constant   (bench/toy_sweep.sh)
(Not a test: minutes of CPU.)
"""
import sys
import numpy as np

F = np.load(sys.argv[1]).astype(np.float32)          # (G, d) unit rows
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
G, d = F.shape
p = 0.99 ** np.arange(G)
p = np.minimum(p * 5.0 / p.sum(), 1.0).astype(np.float32)  # as cterp_toy_create
N, K, B, lr, b1, b2, eps = 1024, 8, 4096, 1e-3, 0.9, 0.999, 1e-8
rng = np.random.default_rng(seed)

def batch(n):
    fire = rng.random((n, G), dtype=np.float32) < p
    mag = rng.random((n, G), dtype=np.float32)
    return (fire * mag) @ F

W_dec = rng.standard_normal((N, d)).astype(np.float32)
W_dec *= 0.1 / np.linalg.norm(W_dec, axis=1, keepdims=True)
W_enc = W_dec.T.copy()                                   # (d, N)
b_enc = np.zeros(N, np.float32)
b_dec = np.zeros(d, np.float32)
params = [W_enc, b_enc, W_dec, b_dec]
m = [np.zeros_like(q) for q in params]
v = [np.zeros_like(q) for q in params]

def mmcs():
    Wn = W_dec / np.maximum(np.linalg.norm(W_dec, axis=1, keepdims=True), 1e-12)
    return float((F @ Wn.T).max(axis=1).mean())

rows = np.arange(B)[:, None]
for t in range(1, steps + 1):
    x = batch(B)
    xc = x - b_dec
    z = xc @ W_enc + b_enc                               # (B, N)
    idx = np.argpartition(-z, K - 1, axis=1)[:, :K]      # top K (ties: any order)
    a = z[rows, idx]
    a = np.where(a > 0, a, 0)                            # TopK(ReLU(z))
    f = np.zeros_like(z)
    f[rows, idx] = a
    xh = f @ W_dec + b_dec
    g = 2.0 / B * (xh - x)                               # d loss / d x_hat
    dW_dec = f.T @ g
    db_dec = g.sum(0)
    df = g @ W_dec.T
    dz = np.where(f > 0, df, 0)
    dW_enc = xc.T @ dz
    db_enc = dz.sum(0)
    db_dec -= W_enc @ db_enc
    grads = [dW_enc, db_enc, dW_dec, db_dec]
    gn = np.sqrt(sum(float((q.astype(np.float64) ** 2).sum()) for q in grads))
    if gn > 1.0:
        grads = [q / gn for q in grads]
    for q, gq, mq, vq in zip(params, grads, m, v):
        mq *= b1; mq += (1 - b1) * gq
        vq *= b2; vq += (1 - b2) * gq * gq
        q -= lr / (1 - b1 ** t) * mq / (np.sqrt(vq / (1 - b2 ** t)) + eps)
    if t % 500 == 0 or t == steps:
        print(f"step {t}: MMCS {mmcs():.4f}  loss {float(((xh - x) ** 2).sum(1).mean()):.4f}", flush=True)
