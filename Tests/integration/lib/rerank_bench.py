"""Market-size re-ranking: `mancs eval --rerank` against torchreid's numpy
`re_ranking` (transcribed in eval_reference.py), same features, same machine.
Not part of the suite (minutes and ~12 GB for numpy); the figures are in
docs/evaluation.md. Usage: rerank_bench.py MANCS WORKDIR [--skip-numpy]

Features: 751 identities (query 3,368, gallery 19,732 incl. distractors),
E = 2048, clustered like eval_reference.py. mancs is timed as a whole process
(reading, distances, re-ranking, evaluation) with /usr/bin/time; numpy's
re_ranking alone (distances precomputed, not counted), in a child process for
its own peak RSS."""
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from eval_reference import euclidean_squared, eval_market1501, re_ranking, write  # noqa: E402


def make(path):
    rng = np.random.default_rng(0)
    ids, dim = 751, 2048
    centres = rng.normal(size=(ids, dim)).astype(np.float32)

    def split(counts, id_offset, centre_rows):
        pids = np.repeat(np.arange(len(counts)), counts)
        x = centre_rows[pids] + 3.4 * rng.normal(size=(len(pids), dim)).astype(np.float32)
        return x.astype(np.float32), (pids + id_offset).astype(np.int64), rng.integers(0, 6, len(pids)).astype(np.int64)

    qc = np.full(ids, 3368 // ids); qc[: 3368 - qc.sum()] += 1
    gc = np.full(ids, (19732 - 2793) // ids); gc[: 19732 - 2793 - gc.sum()] += 1
    q = split(qc, 1, centres)
    g = split(gc, 1, centres)
    d = split(np.full(2793, 1), 10000, rng.normal(size=(2793, dim)).astype(np.float32))
    g = tuple(np.concatenate([a, b]) for a, b in zip(g, d))
    write(path, q, g)
    return q, g


def numpy_child(work):
    import h5py
    with h5py.File(f"{work}/market_rerank.h5") as f:
        q = (f["query/features"][:], f["query/pids"][:], f["query/camids"][:])
        g = (f["gallery/features"][:], f["gallery/pids"][:], f["gallery/camids"][:])
    qg, qq, gg = euclidean_squared(q[0], g[0]), euclidean_squared(q[0], q[0]), euclidean_squared(g[0], g[0])
    start, cpu0 = time.time(), time.process_time()
    dist = re_ranking(qg, qq, gg)
    seconds, cpu = time.time() - start, time.process_time() - cpu0
    del qq, gg
    cmc, mAP, mINP = eval_market1501(dist, q[1], g[1], q[2], g[2], 50)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_gib": peak, "rank1": cmc[0], "mAP": mAP, "mINP": mINP}))


def main():
    if sys.argv[1] == "--numpy-child":
        return numpy_child(sys.argv[2])
    mancs, work = sys.argv[1], sys.argv[2]
    path = f"{work}/market_rerank.h5"
    if not os.path.exists(path):
        make(path)
    out = f"{work}/mancs_rerank.json"
    start = time.time()
    run = subprocess.run(["/usr/bin/time", "-f", "peak RSS %M KB", mancs, "eval", "--features", path, "--rerank",
                          "--json-out", out], capture_output=True, text=True, check=True)
    wall = time.time() - start
    print(run.stdout + run.stderr)
    got = json.load(open(out))
    print(f"mancs eval --rerank: {wall:.1f} s wall (whole process), rank-1 {got['rank1']:.6f} mAP {got['mAP']:.6f}")
    if "--skip-numpy" in sys.argv:
        return
    child = subprocess.run([sys.executable, __file__, "--numpy-child", work], capture_output=True, text=True, check=True)
    ref = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"numpy re_ranking: {ref['seconds']:.1f} s wall, {ref['cpu']:.1f} s cpu (re_ranking alone), peak RSS {ref['peak_gib']:.2f} GiB, "
          f"rank-1 {ref['rank1']:.6f} mAP {ref['mAP']:.6f} mINP {ref['mINP']:.6f}")
    print(f"speed-up {ref['seconds'] / wall:.1f}x; |d rank-1| {abs(ref['rank1'] - got['rank1']):.2e}, "
          f"|d mAP| {abs(ref['mAP'] - got['mAP']):.2e}, |d mINP| {abs(ref['mINP'] - got['mINP']):.2e}")


if __name__ == "__main__":
    main()
