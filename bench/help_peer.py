"""Peer benchmark: HELP (Lee et al., "HELP: Hardware-Adaptive Efficient Latency Prediction for
NAS via Meta-Learning", NeurIPS 2021) on its own unseen FBNet devices, with 10 measured nets.

HELP is run from its public repository, its code and its released FBNet meta-trained
checkpoint (``data/fbnet/checkpoint/help_max_corr.pt``) unchanged; nothing of it is copied here.
Get it with::

    git clone https://github.com/HayeonLee/HELP /work/peers/HELP   # commit 45f70eb9 used

and pass ``--help-repo /work/peers/HELP``. Its Python files are imported from that path at
run time, with three run-time shims and no edit: ``Tensor.cuda`` / ``Module.cuda`` are made
no-ops (HELP calls ``.cuda()`` everywhere; this runs on CPU), and when ``tensorboard`` is not
installed a placeholder ``torch.utils.tensorboard`` module is registered (HELP imports
``SummaryWriter`` at module level and uses it only when meta-training). It needs nothing
beyond torch, numpy, scipy and tqdm.

Checks before any figure: the ``--data`` file's ops and device columns must equal HELP's
``data/fbnet/metainfo.pt`` and ``data/fbnet/latency/<device>.pt`` (the file is a copy of them).

Protocols (each for every device and every repeat; ``r`` = repeat, ``draw`` =
``bench/help_fbnet.py:draw_nets(5000, k, r, seed)``, the nets hwnas measures in repeat ``r``):

- ``help-published``: HELP's meta-test exactly as its README's FBNet command runs it
  (``main.py --search_space fbnet --mode meta-test --num_samples 10 --num_meta_train_sample
  4000 ...``), torch seed ``3 + 1000·seed + r`` (repeat 0 with ``--seed 0`` is the published
  command, seed 3, and is checked against HELP's own ``test_predictor`` printout). Hardware
  embedding: the device's latencies of HELP's 10 fixed reference nets
  (``hardware_embedding_index.pt``). Adaptation: ``k`` nets drawn by HELP's ``get_task``
  (``torch.randperm``) from nets 0–3999 with the device's fastest and slowest 10 % removed;
  targets min-max normalised over those 3,200 nets (so the device's latency range over 3,200
  measured nets is used). Query: nets 4000–4999 less their fastest and slowest 10 % (800).
  The device thus contributes 20 measured nets plus the 3,200-net range.
- ``hwnas-draws``: the same code path with hwnas's nets: embedding from the 10 reference nets,
  adaptation on ``draw``, targets normalised (HELP's ``normalization``) over the 20 measured
  nets only. 20 measured nets.
- ``draws-only``: exactly hwnas's 10 measured nets: ``draw`` is both the embedding input (in
  place of the reference nets, which the embedding was meta-trained on) and the adaptation set;
  targets normalised over ``draw``.
- ``reference-only``: exactly 10 measured nets, HELP's reference nets, as both embedding input
  and adaptation set (as HELP's own OFA NAS mode does); targets normalised over them. The nets
  are fixed; repeats differ only in HELP's Monte-Carlo draws.

Every protocol adapts with HELP's ``train_single_task`` (2 inner steps) and averages HELP's 10
Monte-Carlo predictions (``mc_sampling``), as ``_test_predictor`` does. Figures: Spearman ρ and
Kendall τ of the averaged prediction against the measured milliseconds of every net the
protocol did not adapt on (``all-other``: 5,000 − 10 for ``help-published`` / ``hwnas-draws`` /
``draws-only``, whose evaluation set is hwnas's; 5,000 − the reference nets for
``reference-only``); ``rho_last``: ρ of the last Monte-Carlo prediction alone, the statistic
HELP's code prints; for ``help-published`` also ρ on HELP's own 800-net query set. HELP predicts
normalised latency; MAPE is of its prediction mapped back to ms by inverting the protocol's
normalisation (over the measured nets; for ``help-published`` over its 3,200-net range).

Run:  flock /tmp/hwnas-cpu.lock python bench/help_peer.py --help-repo /work/peers/HELP \\
          --out runs/help_peer.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from help_fbnet import draw_nets, load
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "help-fbnet" / "latency_ms.csv"
PROTOCOLS = ("help-published", "hwnas-draws", "draws-only", "reference-only")
# The README's FBNet meta-test command (script/run_meta_test_fbnet.sh), less --gpu.
META_TRAIN = "1080ti_1,1080ti_32,1080ti_64,silver_4114,silver_4210r,samsung_a50,pixel3," \
             "essential_ph_1,samsung_s7"
META_VALID = "titanx_1,titanx_32,titanx_64,gold_6240"
# HELP's published FBNet figures (README "Table 2"; Spearman ρ, 10 samples).
PUBLISHED = {"raspi4": 0.887, "eyeriss": 0.943, "fpga": 0.892}


def import_help(repo: Path) -> dict[str, types.ModuleType]:
    """HELP's modules, imported from its checkout (CPU shims: see the module docstring)."""
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        importlib.import_module("torch.utils.tensorboard")
    except ImportError:
        stub = types.ModuleType("torch.utils.tensorboard")
        stub.SummaryWriter = object  # type: ignore[attr-defined]
        sys.modules["torch.utils.tensorboard"] = stub
    sys.path.insert(0, str(repo))
    import help as help_module  # HELP's help.py
    import loader
    import main
    import parser as help_parser  # HELP's parser.py
    import utils
    return {"help": help_module, "loader": loader, "main": main, "parser": help_parser,
            "utils": utils}


def help_args(mods: dict[str, types.ModuleType], repo: Path, devices: list[str], k: int,
              save: str, seed: int) -> argparse.Namespace:
    """HELP's own argument parser on the published FBNet meta-test command line."""
    argv = ["main.py", "--search_space", "fbnet", "--mode", "meta-test",
            "--num_samples", str(k), "--num_episodes", "4000", "--seed", str(seed),
            "--num_meta_train_sample", "4000",
            "--load_path", str(repo / "data/fbnet/checkpoint/help_max_corr.pt"),
            "--meta_train_devices", META_TRAIN, "--meta_valid_devices", META_VALID,
            "--meta_test_devices", ",".join(devices), "--main_path", str(repo),
            "--save_path", save]
    saved, sys.argv = sys.argv, argv
    try:
        args = mods["parser"].get_parser()
    finally:
        sys.argv = saved
    with contextlib.redirect_stdout(io.StringIO()):
        return mods["main"].set_path(args)


def check_data(repo: Path, ops: list[list[str]], frame: Any, devices: list[str]) -> None:
    """The CSV must be HELP's data: same nets in the same order, same latencies."""
    meta = torch.load(repo / "data/fbnet/metainfo.pt")["arch"]
    if len(meta) != len(ops) or any(m["arch_str"] != o for m, o in zip(meta, ops, strict=True)):
        raise SystemExit("--data: ops differ from HELP's data/fbnet/metainfo.pt")
    for device in devices:
        if device not in frame.columns:
            raise SystemExit(f"--data: no column {device!r}")
        theirs = np.asarray(torch.load(repo / f"data/fbnet/latency/{device}.pt"), dtype=float)
        if not np.allclose(theirs, frame[device].to_numpy(), rtol=1e-5, atol=0):  # 6 digits
            raise SystemExit(f"--data: {device} differs from HELP's latency/{device}.pt")


def build_help(mods: dict[str, types.ModuleType], args: argparse.Namespace, data: Any,
               torch_seed: int) -> Any:
    """``main.py``'s order: seed, then build HELP (its init draws from torch's RNG). The data
    object is built once and reused (building it draws nothing from any RNG)."""
    args.seed = torch_seed
    mods["main"].set_seed(args)
    build, mods["help"].Data = mods["help"].Data, lambda *a, **k: data
    try:
        return mods["help"].HELP(args)
    finally:
        mods["help"].Data = build


def fresh_model(mods: dict[str, types.ModuleType], args: argparse.Namespace, data: Any,
                torch_seed: int) -> Any:
    """A HELP built as ``main.py`` builds it, with the released checkpoint loaded."""
    model = build_help(mods, args, data, torch_seed)
    model.load_model()
    return model


def predict(model: Any, hw_embed: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
            x_all: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """HELP's ``_test_predictor`` inner loop: ``mc_sampling`` times adapt
    (``train_single_task``) and predict; (mean prediction, last prediction) over ``x_all``."""
    preds = []
    for _ in range(model.mc_sampling):
        adapted, _ = model.train_single_task(hw_embed, xs, ys, model.num_eval_updates)
        preds.append(model.model(x_all, hw_embed, adapted).detach().view(-1).double().numpy())
    return np.mean(preds, axis=0), preds[-1]


def figures(pred_norm: np.ndarray, last: np.ndarray, measured: np.ndarray, lo: float, hi: float,
            idx: np.ndarray) -> dict[str, float]:
    """ρ, τ, ρ of the last Monte-Carlo draw, MAPE of the de-normalised mean prediction."""
    ms = (pred_norm[idx] - 0.05) / 0.9 * (hi - lo) + lo  # inverse of normalization(portion=0.9)
    true = measured[idx]
    return {"n": int(len(idx)),
            "rho": float(spearmanr(pred_norm[idx], true)[0]),
            "tau": float(kendalltau(pred_norm[idx], true)[0]),
            "rho_last": float(spearmanr(last[idx], true)[0]),
            "mape": float(np.mean(np.abs(ms - true) / true) * 100)}


def run_published_command(mods: dict[str, types.ModuleType], args: argparse.Namespace,
                          data: Any) -> dict[str, float]:
    """HELP's own ``test_predictor`` (seed 3): its printed Spearman ρ per device."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        build_help(mods, args, data, 3).test_predictor()
    found = re.findall(r"\[meta_test/(\S+)\] spearman (-?[0-9.]+)", out.getvalue())
    return {device: float(rho) for device, rho in found if device != "average"}


def one_repeat(mods: dict[str, types.ModuleType], args: argparse.Namespace, data: Any,
               lat: dict[str, np.ndarray], devices: list[str], k: int, repeat: int,
               seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Every protocol, every device, for repeat ``repeat``."""
    utils = mods["utils"]
    n = len(data.archs)
    x_all = torch.stack(data.archs)
    ref = np.asarray(data.hw_emb_idx)
    draw = np.asarray(draw_nets(n, k, repeat, seed))
    torch_seed = 3 + 1000 * seed + repeat
    out: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PROTOCOLS}

    # help-published: HELP's get_task draws the adaptation nets; record them via randperm.
    model = fresh_model(mods, args, data, torch_seed)
    perms: list[torch.Tensor] = []
    randperm = torch.randperm

    def recording(*a: Any, **kw: Any) -> torch.Tensor:
        perm = randperm(*a, **kw)
        perms.append(perm.clone())
        return perm

    torch.randperm = recording  # type: ignore[assignment]
    try:
        tasks = data.generate_test_tasks("meta_test")
    finally:
        torch.randperm = randperm  # type: ignore[assignment]
    for (hw_embed, xs, ys, _xq, _yq, device), perm in zip(tasks, perms, strict=True):
        adapt = data.train_idx[device][perm][:k].numpy()
        assert torch.equal(xs, x_all[adapt])
        mean, last = predict(model, hw_embed, xs, ys, x_all)
        train = data.train_idx[device]
        lo, hi = float(data.latency[device][train].min()), float(data.latency[device][train].max())
        rest = np.setdiff1d(np.arange(n), adapt)
        query = data.valid_idx[device].numpy()
        out["help-published"][device] = {
            "torch_seed": torch_seed, "adapt": adapt.tolist(), "embed": ref.tolist(),
            "measured": int(len(np.union1d(ref, adapt))),
            "all-other": figures(mean, last, lat[device], lo, hi, rest),
            "help-query": figures(mean, last, lat[device], lo, hi, query)}

    setups = {"hwnas-draws": (ref, draw), "draws-only": (draw, draw),
              "reference-only": (ref, ref)}
    for protocol, (embed, adapt) in setups.items():
        model = fresh_model(mods, args, data, torch_seed)
        for device in devices:
            latency = torch.tensor(lat[device], dtype=torch.float32)
            measured = np.union1d(embed, adapt)
            norm = utils.normalization(latency=latency, index=torch.as_tensor(measured))
            hw_embed = utils.normalization(latency[embed], portion=1.0)
            xs, ys = x_all[adapt], norm[adapt].view(-1, 1)
            mean, last = predict(model, hw_embed, xs, ys, x_all)
            lo, hi = float(latency[measured].min()), float(latency[measured].max())
            rest = np.setdiff1d(np.arange(n), adapt)
            out[protocol][device] = {
                "torch_seed": torch_seed, "adapt": adapt.tolist(), "embed": embed.tolist(),
                "measured": int(len(measured)),
                "all-other": figures(mean, last, lat[device], lo, hi, rest)}
    return out


def summary(repeats: list[dict], devices: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean and std over repeats, per protocol, device and evaluation set."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for protocol in PROTOCOLS:
        result[protocol] = {}
        for device in devices:
            entry: dict[str, Any] = {}
            for split in ("all-other", "help-query"):
                rows = [r[protocol][device][split] for r in repeats
                        if split in r[protocol][device]]
                if not rows:
                    continue
                entry[split] = {m: {"mean": float(np.mean([x[m] for x in rows])),
                                    "std": float(np.std([x[m] for x in rows], ddof=1))
                                    if len(rows) > 1 else 0.0}
                                for m in ("rho", "tau", "rho_last", "mape")}
                entry[split]["n"] = rows[0]["n"]
            result[protocol][device] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help-repo", type=Path, required=True,
                        help="a checkout of https://github.com/HayeonLee/HELP")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--devices", default="fpga,raspi4,eyeriss")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    repo = opts.help_repo.resolve()
    devices = [d for d in opts.devices.split(",") if d]

    ops, frame = load(opts.data)
    check_data(repo, ops, frame, devices)
    lat = {d: frame[d].to_numpy() for d in devices}
    mods = import_help(repo)
    start = time.time()
    with tempfile.TemporaryDirectory() as save:
        args = help_args(mods, repo, devices, opts.k, save, 3)
        with contextlib.redirect_stdout(io.StringIO()):
            data = mods["loader"].Data(args.mode, args.data_path, args.search_space,
                                       args.meta_train_devices, args.meta_valid_devices,
                                       args.meta_test_devices, args.num_inner_tasks,
                                       args.num_meta_train_sample, args.num_samples,
                                       args.num_query, args.sampled_arch_path)
        published_cmd = run_published_command(mods, args, data) if opts.k == 10 else {}
        repeats = []
        for r in range(opts.repeats):
            repeats.append(one_repeat(mods, args, data, lat, devices, opts.k, r, opts.seed))
            print(f"repeat {r}: " + "  ".join(
                f"{d} {repeats[-1]['hwnas-draws'][d]['all-other']['rho']:.3f}"
                for d in devices), file=sys.stderr, flush=True)
    if published_cmd and opts.seed == 0 and opts.repeats:
        for device, rho in published_cmd.items():
            mine = repeats[0]["help-published"][device]["help-query"]["rho_last"]
            if abs(mine - rho) > 1e-3:
                raise SystemExit(f"{device}: HELP printed {rho}, this loop gives {mine:.4f}")
    stats = summary(repeats, devices)
    for protocol in PROTOCOLS:
        print(f"== {protocol}")
        for device in devices:
            s = stats[protocol][device]["all-other"]
            line = (f"{device:8s} rho {s['rho']['mean']:.3f} ± {s['rho']['std']:.3f}  "
                    f"tau {s['tau']['mean']:.3f} ± {s['tau']['std']:.3f}  "
                    f"MAPE {s['mape']['mean']:.1f} %  (n={s['n']}, {opts.repeats} repeats)")
            if "help-query" in stats[protocol][device]:
                q = stats[protocol][device]["help-query"]
                line += (f"  | HELP query rho {q['rho']['mean']:.3f} ± {q['rho']['std']:.3f}"
                         f", printed {q['rho_last']['mean']:.3f}")
            print(line)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    record = {"help_repo": str(repo), "help_commit": commit, "data": str(opts.data),
              "devices": devices, "k": opts.k, "repeats": opts.repeats, "seed": opts.seed,
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "seconds": round(time.time() - start, 1),
              "published_command_seed3_printed_rho": published_cmd,
              "published_table2": PUBLISHED, "summary": stats, "per_repeat": repeats}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(record, indent=1))
    print(f"wrote {opts.out} ({record['seconds']} s)")


if __name__ == "__main__":
    main()
