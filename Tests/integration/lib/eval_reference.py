"""Independent numpy reference for `mancs eval`'s distance, normalisation and
re-ranking options: torchreid's `compute_distance_matrix` (squared Euclidean,
cosine), its `re_ranking` (k-reciprocal, Zhong et al. CVPR 2017; transcribed
from torchreid/utils/rerank.py, called as torchreid's engine calls it, with
squared Euclidean distances) and `eval_market1501` with mINP (stable argsort).

Usage: eval_reference.py MANCS WORKDIR. Writes random clustered features files,
runs `mancs eval --json-out` with each option set, compares CMC (ranks 1-20), mAP
and mINP with the reference to 1e-4. Exit status 1 on any mismatch."""
import json
import subprocess
import sys

import h5py
import numpy as np


def euclidean_squared(a, b):
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    return (np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2 * a @ b.T).astype(np.float32)


def normalize(x):
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def cosine(a, b):
    return (1 - normalize(a) @ normalize(b).T).astype(np.float32)


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    # torchreid/utils/rerank.py, unchanged in substance.
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1),
         np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0)
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1. * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    query_num = q_g_dist.shape[0]
    gallery_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    all_num = gallery_num
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, :k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, :k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            candidate_forward_k_neigh_index = initial_rank[candidate, :int(np.around(k1 / 2.)) + 1]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index,
                                                            :int(np.around(k1 / 2.)) + 1]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > \
                    2. / 3 * len(candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1. * weight / np.sum(weight)
    original_dist = original_dist[:query_num, ]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    invIndex = []
    for i in range(gallery_num):
        invIndex.append(np.where(V[:, i] != 0)[0])
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, gallery_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(V[i, indNonZero[j]],
                                                                               V[indImages[j], indNonZero[j]])
        jaccard_dist[i] = 1 - temp_min / (2. - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_AP, all_INP = [], [], []
    for q in range(distmat.shape[0]):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw_cmc = matches[q][keep]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        max_pos_idx = np.max(np.where(raw_cmc == 1))
        all_INP.append(cmc[max_pos_idx] / (max_pos_idx + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0) * raw_cmc
        all_AP.append(tmp.sum() / raw_cmc.sum())
    return np.asarray(all_cmc).astype(np.float64).mean(0), np.mean(all_AP), np.mean(all_INP)


def features(rng, centres, per_id, cams, spread):
    ids, dim = centres.shape
    pids = np.repeat(np.arange(1, ids + 1), per_id)
    camids = rng.integers(0, cams, size=len(pids))
    feats = centres[pids - 1] * rng.uniform(0.5, 2.0, size=(len(pids), 1)) + spread * rng.normal(size=(len(pids), dim))
    return feats.astype(np.float32), pids.astype(np.int64), camids.astype(np.int64)


def write(path, q, g):
    with h5py.File(path, "w") as f:
        for name, (x, p, c) in (("query", q), ("gallery", g)):
            f[f"{name}/features"] = x
            f[f"{name}/pids"] = p
            f[f"{name}/camids"] = c


def main():
    mancs, work = sys.argv[1], sys.argv[2]
    max_rank = 20
    failures = 0
    for case, (ids, dim, spread, seed) in enumerate([(30, 16, 0.5, 1), (45, 24, 0.7, 2), (25, 8, 0.35, 3)]):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(ids, dim))
        q = features(rng, centres, 2, 4, spread)
        g = features(rng, centres, 7, 4, spread)
        # some distractors (identities only in the gallery)
        d = features(rng, rng.normal(size=(10, dim)), 3, 4, spread)
        g = (np.concatenate([g[0], d[0]]), np.concatenate([g[1], d[1] + 1000]), np.concatenate([g[2], d[2]]))
        path = f"{work}/case{case}.h5"
        write(path, q, g)
        qf, gf = q[0], g[0]
        qn, gn = normalize(qf), normalize(gf)
        variants = {
            "": euclidean_squared(qf, gf),
            "--distance cosine": cosine(qf, gf),
            "--normalize": euclidean_squared(qn, gn),
            "--rerank": re_ranking(euclidean_squared(qf, gf), euclidean_squared(qf, qf), euclidean_squared(gf, gf)),
            "--rerank --distance cosine": re_ranking(cosine(qf, gf), cosine(qf, qf), cosine(gf, gf)),
            # many small blocks: the neighbour search's off-diagonal (transposed) updates
            "--rerank --block-rows 37":
                re_ranking(euclidean_squared(qf, gf), euclidean_squared(qf, qf), euclidean_squared(gf, gf)),
            "--rerank --distance cosine --block-rows 50": re_ranking(cosine(qf, gf), cosine(qf, qf), cosine(gf, gf)),
            "--rerank --normalize --k1 10 --k2 1 --lambda 0.5":
                re_ranking(euclidean_squared(qn, gn), euclidean_squared(qn, qn), euclidean_squared(gn, gn), 10, 1, 0.5),
            # (lambda 0 is left out: Jaccard distances then tie exactly, and rounding orders the ties)
            "--rerank --k1 7 --k2 3 --lambda 0.1":
                re_ranking(euclidean_squared(qf, gf), euclidean_squared(qf, qf), euclidean_squared(gf, gf), 7, 3, 0.1),
        }
        results = {}
        for flags, distmat in variants.items():
            out = f"{work}/out.json"
            cmd = [mancs, "eval", "--features", path, "--json-out", out, "--max-rank", str(max_rank)] + flags.split()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            got = json.load(open(out))
            cmc, mAP, mINP = eval_market1501(distmat, q[1], g[1], q[2], g[2], max_rank)
            diffs = [abs(got["mAP"] - mAP), abs(got["mINP"] - mINP)] + \
                    [abs(a - b) for a, b in zip(got["cmc"][:max_rank], cmc)]
            worst = max(diffs)
            ok = worst <= 1e-4
            failures += not ok
            print(f"{'ok' if ok else 'FAIL'}: case {case} [{flags or 'euclidean'}] rank-1 {got['rank1']:.4f} "
                  f"(ref {cmc[0]:.4f}) mAP {got['mAP']:.6f} (ref {mAP:.6f}) mINP {got['mINP']:.6f} "
                  f"(ref {mINP:.6f}) max diff {worst:.2e}")
            results[flags] = (got["rank1"], got["mAP"])
        # Each option must change the numbers, or the comparison above proves little.
        for flags in ("--distance cosine", "--rerank", "--rerank --distance cosine"):
            if results[flags] == results[""]:
                failures += 1
                print(f"FAIL: case {case}: {flags} gives the same rank-1 and mAP as the default")
    print(f"{failures} mismatch(es)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
