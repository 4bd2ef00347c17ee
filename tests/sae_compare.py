#!/usr/bin/python3
# Compares the float tensors of two safetensors files (an SAE's weights, a trainer state).
#   sae_compare.py A B             prints, per tensor, max |a - b| / max |a| and ||a - b|| / ||a||
#   sae_compare.py A B --tol T M   exits 1 unless every tensor has ||a - b|| / ||a|| <= T and
#                                  max |a - b| / max |a| <= M (docs/scaling.md: the tolerance of
#                                  P MPI ranks against one process)
import json, struct, sys
import numpy as np

DT = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64, 'U64': np.uint64, 'I32': np.int32, 'U8': np.uint8}

def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=DT[v['dtype']]).reshape(v['shape'])
    return out

a, b = load(sys.argv[1]), load(sys.argv[2])
tol = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == '--tol' else None
mtol = float(sys.argv[5]) if len(sys.argv) > 5 else None
ok = sorted(a) == sorted(b)
if not ok:
    print('tensors differ: %s vs %s' % (sorted(a), sorted(b)))
for k in sorted(set(a) & set(b)):
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    if x.shape != y.shape:
        print('%s: shapes %s vs %s' % (k, x.shape, y.shape))
        ok = False
        continue
    d = np.abs(x - y)
    rmax = d.max() / max(np.abs(x).max(), 1e-30) if d.size else 0.0
    rfro = np.linalg.norm(d) / max(np.linalg.norm(x), 1e-30) if d.size else 0.0
    print('%s: max rel %.3g, frobenius rel %.3g%s' % (k, rmax, rfro, ', identical' if np.array_equal(a[k], b[k]) else ''))
    if tol is not None and (rfro > tol or (mtol is not None and rmax > mtol)):
        ok = False
sys.exit(0 if ok or tol is None else 1)
