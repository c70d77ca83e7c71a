"""Checks mancs-dist's learning-rate schedules and Adam weight decay against
PyTorch. Usage: schedule_reference.py lr METRICS.jsonl SPEC
             or schedule_reference.py adam BEFORE.h5 GRADS.h5 AFTER.h5 LR WD CLIP

lr: every "kind":"train" line's lr (logged at each step, epoch = its "epoch")
equals torch's: LinearLR(start_factor, total_iters=warmup) factor times the
MultiStepLR / CosineAnnealingLR(T_max=epochs) rate, each scheduler stepped once
per epoch. SPEC is JSON: kind, lr, epochs, milestones, gamma, warmup, factor.

adam: the parameters and moments of checkpoint BEFORE, the gradient of the next
step (before clipping, from --dump-gradients), clip_grad_norm_(CLIP) and one
torch.optim.Adam(lr=LR, weight_decay=WD) step give checkpoint AFTER's."""
import json
import sys

import h5py
import torch


def torch_lrs(spec, epochs):
    def run(make):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=spec["lr"])
        sched = make(opt)
        out = []
        for _ in range(epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    n = spec["epochs"]
    if spec["kind"] == "step":
        main = run(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, spec["milestones"], gamma=spec["gamma"]))
    elif spec["kind"] == "cosine":
        main = run(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=n, eta_min=0))
    else:
        main = [spec["lr"]] * epochs
    if spec["warmup"] > 0:
        warm = run(lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=spec["factor"], end_factor=1.0,
                                                               total_iters=spec["warmup"]))
        main = [m * w / spec["lr"] for m, w in zip(main, warm)]
    return main


def check_lr(metrics, spec):
    spec = json.loads(spec)
    lines = [json.loads(l) for l in open(metrics) if '"kind":"train"' in l]
    epochs = max(l["epoch"] for l in lines) + 1
    ref = torch_lrs(spec, epochs)
    worst = 0.0
    for l in lines:
        worst = max(worst, abs(l["lr"] - ref[l["epoch"]]) / ref[l["epoch"]])
    distinct = sorted(set(round(l["lr"], 12) for l in lines))
    print(f"{spec['kind']}: {len(lines)} steps over {epochs} epochs, {len(distinct)} distinct rates "
          f"{[f'{x:.3e}' for x in distinct]}, worst relative difference to torch {worst:.1e}")
    assert len(distinct) >= 3, "the schedule did not change the rate"
    assert worst <= 1e-9, f"lr differs from torch's by {worst}"


def check_adam(before, grads, after, lr, wd, clip):
    lr, wd, clip = float(lr), float(wd), float(clip)
    b, g, a = h5py.File(before), h5py.File(grads), h5py.File(after)
    names = list(b["model"].keys())
    params = [torch.nn.Parameter(torch.tensor(b["model"][n][()])) for n in names]
    for p, n in zip(params, names):
        p.grad = torch.tensor(g["grads"][n][()])
    torch.nn.utils.clip_grad_norm_(params, clip)
    step = int(torch.tensor(b["optimizer"].attrs["step"]).reshape(-1)[0])

    def stepped(decay):
        ps = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for q, p in zip(ps, params):
            q.grad = p.grad.clone()
        opt = torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=decay)
        for q, n in zip(ps, names):
            opt.state[q] = {"step": torch.tensor(float(step)), "exp_avg": torch.tensor(b["optimizer/exp_avg"][n][()]),
                            "exp_avg_sq": torch.tensor(b["optimizer/exp_avg_sq"][n][()])}
        opt.step()
        return ps, opt

    ps, opt = stepped(wd)
    plain, _ = stepped(0.0)
    worst, decay_effect, largest_error = 0.0, 0.0, 0.0
    for q, p0, pp, n in zip(ps, params, plain, names):
        got = torch.tensor(a["model"][n][()])
        update = (q.detach() - p0.detach()).abs().max().item()
        err = (got - q.detach()).abs().max().item()
        bound = 1e-3 * update + 2e-7 * q.detach().abs().max().item() + 1e-12
        worst = max(worst, err / bound)
        decay_effect = max(decay_effect, (q.detach() - pp.detach()).abs().max().item())
        largest_error = max(largest_error, err)
        for key, group in (("exp_avg", "optimizer/exp_avg"), ("exp_avg_sq", "optimizer/exp_avg_sq")):
            want = opt.state[q][key]
            diff = (torch.tensor(a[group][n][()]) - want).abs().max().item()
            assert diff <= 1e-5 * want.abs().max().item() + 1e-30, f"{n} {key} differs by {diff}"
    print(f"adam step {step + 1} (lr {lr:.3e}, weight_decay {wd}): worst error / bound {worst:.3f} over {len(names)} "
          f"tensors (largest error {largest_error:.2e}); weight decay moves parameters by up to {decay_effect:.2e}")
    assert worst <= 1, "parameters differ from torch.optim.Adam's step"
    assert wd == 0 or decay_effect > 10 * largest_error, "weight decay made no visible difference"


if __name__ == "__main__":
    if sys.argv[1] == "lr":
        check_lr(*sys.argv[2:])
    else:
        check_adam(*sys.argv[2:])
