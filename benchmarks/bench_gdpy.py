"""Whole runs: eosmodel against Cohen et al.'s PyTorch ``gd.py`` method (run: python benchmarks/bench_gdpy.py).

The setting of Cohen et al. (arXiv 2103.00065, github locuslab/edge-of-stability, ``src/gd.py``):
fc-tanh 3072-200-200-10 (PyTorch default init), MSE ``½ Σ_classes (f(x) - onehot(y))²`` averaged over
examples, full-batch GD at a fixed stepsize, gradients accumulated over physical batches of 1000,
for ``--steps`` steps; every step the train and test loss (a forward pass over each set, as
``compute_losses``); every ``--eig-every`` steps the top ``--neigs`` Hessian eigenvalues of the
training loss by ``scipy.sparse.linalg.eigsh(LinearOperator, neigs)`` (their ``lanczos``: ARPACK,
``which='LM'``, ``tol=0``, i.e. to machine precision) with double-backward HVPs
(``torch.autograd.grad(create_graph=True)`` then the gradient of ``g·v``), chunked like the gradient.
The reference is reimplemented here (``--child torch``) and needs PyTorch (``pip install -e ".[bench]"``);
without it only the eosmodel figures are printed.

eosmodel runs the same model size, data, stepsize, cadences and physical batch through its command
line (``eosmodel train``: import, compile, run, trace written), with the test loss at
every step (``train.eval_every = 1``; the train loss of every step comes with the gradient) and the
warm-started tracker at ``tol = --tol``. Each run is a fresh process, timed from outside (wall time,
imports and compilation included). Rounds interleave: eosmodel with an empty compilation cache, eosmodel again (the persistent cache filled by the previous run), optionally the eosmodel of another
source tree (``--baseline-tree``, e.g. the main checkout: the "before" figure) and eosmodel without
sharpness tracking, then torch. The ratios are per round (same conditions), the median over rounds is printed.

Data: real CIFAR-10 is not on the benchmark machine, so the data is eosmodel's synthetic Gaussian
mixture of CIFAR shape (32x32x3 inputs, 10 classes; ``--n`` train, ``--n-test`` test examples;
Cohen et al. use the first 5000 CIFAR-10 training images and the 10000 test images). The cost per
step does not depend on the values of the data.

Options: --n (5000), --n-test (10000), --steps (600), --eig-every (50), --neigs (1), --eta (0.02),
--tol (1e-3), --chunk (1000), --rounds (1), --baseline-tree PATH, --no-untracked, --torch-threads (0).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- the torch reference


def torch_reference(data_path: str, steps: int, eig_every: int, neigs: int, eta: float, chunk: int,
                    threads: int) -> dict:
    """Cohen et al.'s gd.py loop on the arrays of ``data_path`` (runs in the child process)."""
    import scipy.sparse.linalg as spla
    import torch
    from torch import nn
    from torch.nn.utils import parameters_to_vector

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    d = np.load(data_path)
    x_tr, x_te = torch.tensor(d["x_train"]).flatten(1), torch.tensor(d["x_test"]).flatten(1)
    y_tr = nn.functional.one_hot(torch.tensor(d["y_train"]).long(), 10).float()
    y_te = nn.functional.one_hot(torch.tensor(d["y_test"]).long(), 10).float()
    net = nn.Sequential(nn.Linear(x_tr.shape[1], 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 10))
    sq = lambda out, y: 0.5 * ((out - y) ** 2).sum()  # noqa: E731  (their SquaredLoss, summed)
    opt = torch.optim.SGD(net.parameters(), lr=eta)

    def batches(x, y):
        for i in range(0, len(x), chunk):
            yield x[i : i + chunk], y[i : i + chunk]

    def compute_loss(x, y):
        with torch.no_grad():
            return sum(float(sq(net(xb), yb)) for xb, yb in batches(x, y)) / len(x)

    nparams = sum(p.numel() for p in net.parameters())
    hvps = [0]

    def hvp(vec):
        hvps[0] += 1
        v = torch.tensor(vec, dtype=torch.float)
        out = torch.zeros(nparams)
        for xb, yb in batches(x_tr, y_tr):
            loss = sq(net(xb), yb) / len(x_tr)
            grads = torch.autograd.grad(loss, net.parameters(), create_graph=True)
            dot = parameters_to_vector(grads).mul(v).sum()
            out += parameters_to_vector(torch.autograd.grad(dot, net.parameters(), retain_graph=True))
        return out.numpy()

    eigs, losses = [], []
    t0 = time.perf_counter()
    for step in range(steps):
        losses.append((compute_loss(x_tr, y_tr), compute_loss(x_te, y_te)))
        if eig_every > 0 and step % eig_every == 0:
            op = spla.LinearOperator((nparams, nparams), matvec=hvp, dtype=np.float32)
            eigs.append(sorted(spla.eigsh(op, neigs, return_eigenvectors=False).tolist(), reverse=True))
        opt.zero_grad()
        for xb, yb in batches(x_tr, y_tr):
            (sq(net(xb), yb) / len(x_tr)).backward()
        opt.step()
    return {"loop_s": time.perf_counter() - t0, "hvps": hvps[0], "first_eigs": eigs[0] if eigs else None,
            "final_train_loss": losses[-1][0]}


# ----------------------------------------------------------------------------------- eosmodel runs


def eosmodel_config(args, every: int) -> dict:
    return {
        "data": {"name": "synthetic", "n_train": args.n, "n_test": args.n_test, "num_classes": 10,
                 "input_shape": [32, 32, 3], "seed": 0},
        "model": {"name": "fc-tanh", "width": 200, "depth": 2},
        "loss": {"name": "mse"},
        "tuner": {"name": "constant", "stepsize": args.eta},
        "train": {"steps": args.steps, "batch_size": 0, "chunk_size": args.chunk, "eval_every": 1,
                  "log_every": 50, "checkpoint_every": 0, "seed": 0},
        "sharpness": {"every": every, "k": args.neigs, "tol": args.tol},
    }


def run_child(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"benchmark child failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return wall, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eig-every", type=int, default=50)
    parser.add_argument("--neigs", type=int, default=1)
    parser.add_argument("--eta", type=float, default=0.02)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline-tree", default="", help="another eosmodel source tree to time as 'before'")
    parser.add_argument("--no-untracked", action="store_true", help="skip the eosmodel run without sharpness")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch.set_num_threads (0: torch's default); 1 avoids OpenMP spin-waiting on a crowded machine")
    parser.add_argument("--child", choices=["torch"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "torch":
        out = torch_reference(args.data, args.steps, args.eig_every, args.neigs, args.eta, args.chunk, args.torch_threads)
        print(json.dumps(out))
        return

    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    from eosmodel.train import load_dataset

    print(f"load average at start: {os.getloadavg()}  (cores: {os.cpu_count()})")
    print(f"synthetic CIFAR-shaped data (real CIFAR-10 is not on this machine): n={args.n} train, "
          f"{args.n_test} test; fc-tanh 3072-200-200-10, {args.steps} steps, eta={args.eta}, top-{args.neigs} "
          f"eigenvalue(s) every {args.eig_every} steps, physical batch {args.chunk}")
    work = Path(tempfile.mkdtemp(prefix="bench_gdpy_"))
    ds = load_dataset(eosmodel_config(args, 0)["data"])
    np.savez(work / "data.npz", x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test)

    def eos_cmd(every: int, tag: str) -> list[str]:
        cfg_path = work / f"config_{tag}.json"
        cfg_path.write_text(json.dumps(eosmodel_config(args, every)))
        out = work / f"run_{tag}"
        shutil.rmtree(out, ignore_errors=True)
        cli = "import sys; from eosmodel.cli import main; sys.exit(main())"
        return [sys.executable, "-c", cli, "train", str(cfg_path), "--out", str(out)]

    def env_for(tree: Path, cache: Path | None) -> dict:
        env = dict(os.environ, PYTHONPATH=str(tree))
        env.pop("EOSMODEL_NO_COMPILATION_CACHE", None)
        if cache is None:
            env["EOSMODEL_NO_COMPILATION_CACHE"] = "1"
        else:
            env["EOSMODEL_COMPILATION_CACHE_DIR"] = str(cache)
        return env

    times: dict[str, list[float]] = {}
    for r in range(args.rounds):
        cache = work / f"cache_{r}"
        shutil.rmtree(cache, ignore_errors=True)
        runs = []
        runs.append(("eosmodel (empty compilation cache)", eos_cmd(args.eig_every, "cold"), env_for(ROOT, cache)))
        runs.append(("eosmodel (compilation cache filled)", eos_cmd(args.eig_every, "warm"), env_for(ROOT, cache)))
        if args.baseline_tree:
            runs.append((f"eosmodel of {args.baseline_tree} (before)", eos_cmd(args.eig_every, "base"),
                         env_for(Path(args.baseline_tree), None)))
        if not args.no_untracked:
            runs.append(("eosmodel without sharpness (no cache)", eos_cmd(0, "plain"), env_for(ROOT, None)))
        if have_torch:  # last in the round (a failing eosmodel child shows at once)
            runs.append(("torch gd.py", [sys.executable, __file__, "--child", "torch", "--data", str(work / "data.npz"),
                                         "--steps", str(args.steps), "--eig-every", str(args.eig_every), "--neigs",
                                         str(args.neigs), "--eta", str(args.eta), "--chunk", str(args.chunk),
                                         "--torch-threads", str(args.torch_threads)],
                         dict(os.environ)))
        for name, cmd, env in runs:
            wall, out = run_child(cmd, env)
            times.setdefault(name, []).append(wall)
            extra = f"; {out.strip().splitlines()[-1]}" if name.startswith("torch") else ""
            print(f"round {r}: {name}: {wall:.1f} s  (load average {os.getloadavg()[0]:.2f}){extra}", flush=True)

    print(f"load average at end: {os.getloadavg()}  (the machine is shared: ratios are per round, in one run)")
    med = {name: float(np.median(t)) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: median {med[name]:.1f} s over {len(t)} round(s) {[round(x, 1) for x in t]}")
    if have_torch:
        ref = np.asarray(times["torch gd.py"])
        for name, t in times.items():
            if name != "torch gd.py":
                ratio = np.asarray(t) / ref
                print(f"ratio {name} / torch gd.py: median {np.median(ratio):.3f} (per round {np.round(ratio, 3).tolist()})"
                      + ("  [target <= 0.25]" if "filled" in name else ""))
    else:
        print("PyTorch is not installed (pip install -e '.[bench]'): eosmodel figures only")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
