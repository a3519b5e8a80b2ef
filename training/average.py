"""Average the weights of several checkpoints of one lineage (SWA / a "model soup"), then
re-estimate BatchNorm statistics on the training faces.

Checkpoints fine-tuned from one starting point sit in one basin, so their mean is a model too,
often flatter and steadier than any one epoch (Izmailov et al. 2018, "Averaging Weights Leads to
Wider Optima"). BatchNorm's running statistics do not average linearly, so they are measured
again: one pass over the training faces (framed as in training, not augmented) in train mode,
without gradients, with a cumulative moving average.

    python -m training.average runs/robust_tsnet/best.pt runs/robust_long/best.pt --out runs/soup.pt

With one checkpoint, nothing is averaged: only its BatchNorm statistics are measured again on
clean faces. Training sees augmented, mixed batches, so its running statistics describe inputs
that inference never gets (a train/test mismatch in the spirit of Touvron et al. 2019, "Fixing
the train-test resolution discrepancy").

    python -m training.average runs/patient32/ep30.pt --out runs/patient32_e30_bn.pt

The output is a checkpoint like the inputs (``training.export``, ``training.prior_shift`` and
``training.evaluate`` read it); its ``averaged_from`` names the inputs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from pyfer.atomic import make_folders
from pyfer.facenorm import FaceFraming
from training.checkpoint import load_checkpoint, save_checkpoint
from training.cli import reported_errors, run_tool
from training.data import DEFAULT_DATA, load_dataset, to_model_input


def average_state(states: list[dict]) -> dict:
    """The elementwise mean of float tensors; integer buffers (BN's batch counts) from the first."""
    keys = states[0].keys()
    for s in states[1:]:
        if s.keys() != keys or any(s[k].shape != states[0][k].shape for k in keys):
            raise SystemExit("the checkpoints hold different architectures: they cannot be averaged")
    return {k: (torch.stack([s[k].double() for s in states]).mean(0).to(states[0][k].dtype)
                if states[0][k].is_floating_point() else states[0][k].clone()) for k in keys}


@torch.no_grad()
def recompute_batchnorm(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> None:
    """Replace every BN's running mean/var by their values over ``images`` (model-ready input)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
    model.train()
    seen = 0
    # (a minute or more over FERPlus train on 2 cores; tqdm shows no bar where stderr is not a terminal)
    for i in tqdm(range(0, len(images), batch), desc="BN statistics", unit="batch", disable=None):
        x = images[i:i + batch]
        seen += len(x)
        for bn in bns:  # running = mean over the batches so far, each weighted by its size
            bn.momentum = len(x) / seen
        model(x)
    model.eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="training checkpoints (.pt) of one architecture (one: only re-measure BN)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA, help="training faces for the BN statistics")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with reported_errors():
        make_folders(Path(args.out).parent)  # before the work, not after it

        ckpts = [load_checkpoint(p) for p in args.checkpoints]
    first = ckpts[0]
    if any(c.spec != first.spec or c.prep != first.prep for c in ckpts[1:]):  # (specs: older ones lack a table)
        raise SystemExit("the checkpoints differ in architecture or preprocessing: they cannot be averaged")
    framings = {json.dumps(c.state.get("framing"), sort_keys=True) for c in ckpts}
    if len(framings) > 1:  # not one lineage: their BN statistics could be measured on one framing only
        modes = [(c.state.get("framing") or {}).get("mode", "the data set's own crops") for c in ckpts]
        if len(set(modes)) == 1:  # one mode, other settings: those are told
            modes = [json.dumps(c.state.get("framing"), sort_keys=True) for c in ckpts]
        raise SystemExit("the checkpoints were trained on differently framed faces ("
                         + ", ".join(f"{p}: {m}" for p, m in zip(args.checkpoints, modes))
                         + "): not one lineage, so they are not averaged")
    model, _, prep = first.build_model()
    model.load_state_dict(average_state([c.state["model"] for c in ckpts]))

    framing = first.state.get("framing")  # what the run trained on; absent: the datasets' own frames
    if framing is None:
        faces = load_dataset(args.data, prep, "train")
    else:
        from training.framing import load_framed

        faces = load_framed(args.data, prep, "train", FaceFraming.from_dict(framing))
    print(f"BN statistics over {len(faces)} training faces (framing: {framing and framing['mode']})", flush=True)
    recompute_batchnorm(model, to_model_input(torch.from_numpy(faces.images).unsqueeze(1), prep))

    state = {k: v for k, v in first.state.items() if k not in ("optimizer", "scheduler", "train_model", "rng", "cuda_rng")}
    state["model"] = model.state_dict()
    state["averaged_from"] = [str(Path(p)) for p in args.checkpoints]
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        save_checkpoint(state, args.out)
    print(f"wrote {args.out} (mean of {len(ckpts)} checkpoints)" if len(ckpts) > 1
          else f"wrote {args.out} ({args.checkpoints[0]} with its BN statistics measured again)")


if __name__ == "__main__":
    run_tool(main)
