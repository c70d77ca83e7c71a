"""Reads RUN_DIR/tensorboard/ with the tensorboard package's own event reader
and checks it against RUN_DIR/metrics.jsonl: every train and eval line's scalars
are there, at its step, equal to float32 precision. Usage: tensorboard_check.py RUN_DIR"""
import glob
import json
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

def crc32c(data):
    """Bitwise CRC-32C (Castagnoli), independent of the writer's table."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value

run = sys.argv[1]
files = glob.glob(f"{run}/tensorboard/events.out.tfevents.*")
assert files, "no event files"
records = 0
for path in files:  # TFRecord framing and both CRCs of every record
    blob = open(path, "rb").read()
    at = 0
    while at < len(blob):
        header = blob[at:at + 8]
        length = struct.unpack("<Q", header)[0]
        assert struct.unpack("<I", blob[at + 8:at + 12])[0] == masked(header), f"{path}: bad length CRC at {at}"
        data = blob[at + 12:at + 12 + length]
        assert len(data) == length, f"{path}: truncated record at {at}"
        assert struct.unpack("<I", blob[at + 12 + length:at + 16 + length])[0] == masked(data), f"{path}: bad data CRC"
        at += 16 + length
        records += 1
print(f"{records} records, all CRC-32C checks pass")
acc = EventAccumulator(f"{run}/tensorboard", size_guidance={"scalars": 0})
acc.Reload()
tags = acc.Tags()["scalars"]
print(f"{len(files)} event file(s); tags: {sorted(tags)}")
want = {"train": {"loss": "loss/total", "loss_rank": "loss/rank", "loss_cls": "loss/cls", "loss_att": "loss/att",
                  "lr": "train/lr", "grad_norm": "train/grad_norm", "imgs_per_s": "train/imgs_per_s"},
        "eval": {"rank1": "eval/rank1", "mAP": "eval/mAP", "mINP": "eval/mINP"}}
for kind in want.values():
    for tag in kind.values():
        assert tag in tags, f"missing tag {tag}"
series = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags}
checked = 0
for line in open(f"{run}/metrics.jsonl"):
    m = json.loads(line)
    for key, tag in want.get(m.get("kind"), {}).items():
        got = series[tag].get(m["step"])
        assert got is not None, f"{tag} has no value at step {m['step']}"
        assert abs(got - m[key]) <= 1e-6 * max(1.0, abs(m[key])), f"{tag} at step {m['step']}: {got} vs {m[key]}"
        checked += 1
print(f"{checked} values agree with metrics.jsonl")
assert checked >= 20
