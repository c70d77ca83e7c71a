"""A `mancs export` file in PyTorch: rebuild the reference network
(shared/reference/mancs_ref.py) from the file's __metadata__, load the weights
with safetensors' own loader and PyTorch's strict load_state_dict, run it in
eval mode on the first images of a features file written by `mancs extract`,
and compare f_rank with the file's features.

    python export_reference.py MODEL.safetensors FEATURES.h5 DATA_DIR REFERENCE_DIR N TOL EXPECTED_JSON

EXPECTED_JSON: a few config keys the metadata must hold (e.g. {"base_width": 8}).
Prints one line per split; exits 1 when a difference is above TOL.
"""
import json
import os
import sys

import h5py
import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

model_path, features_path, data_dir, reference_dir, n, tol, expected = sys.argv[1:8]
n, tol, expected = int(n), float(tol), json.loads(expected)
sys.path.insert(0, reference_dir)
import mancs_ref as M  # noqa: E402

with safe_open(model_path, framework="pt") as f:
    meta = f.metadata()
if meta.get("format") != "mancs-weights":
    sys.exit(f"FAIL: __metadata__ format is {meta.get('format')!r}")
config = json.loads(meta["config"])
for k, v in expected.items():
    if config.get(k) != v:
        sys.exit(f"FAIL: metadata config {k} = {config.get(k)!r}, expected {v!r}")

torch.set_grad_enabled(False)
model = M.Mancs(M.Config(**config))
for m in model.modules():
    if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
        m.eps, m.momentum = float(meta["bn_eps"]), float(meta["bn_momentum"])
state = load_file(model_path)
model.load_state_dict(state, strict=True)  # every tensor named, shaped and present
model.eval()
print(f"loaded {len(state)} tensors into mancs_ref.Mancs(Config(**{config}))")

mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
worst = 0.0
with h5py.File(features_path, "r") as h:
    for split in ("query", "gallery"):
        paths = [p.decode() if isinstance(p, bytes) else p for p in h[split]["paths"][:n]]
        expected_features = h[split]["features"][:n]
        images = []
        for p in paths:
            image = Image.open(p if os.path.isabs(p) else os.path.join(data_dir, p)).convert("RGB")
            # The evaluation transform is resize + normalise; the test images are
            # already at the input size, so there is no resampling to match.
            if image.size != (config["width"], config["height"]):
                sys.exit(f"FAIL: {p} is {image.size}, not the input size")
            images.append((np.asarray(image, dtype=np.float32) / 255 - mean) / std)
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        f_rank = model(x)[0].numpy()
        diff = float(np.abs(f_rank - expected_features).max())
        scale = float(np.abs(expected_features).max())
        worst = max(worst, diff)
        print(f"{split}: {len(paths)} images, max |torch - mancs extract| = {diff:.3g} (features up to {scale:.3g})")
if worst > tol:
    sys.exit(f"FAIL: features differ by {worst:.3g} > {tol}")
