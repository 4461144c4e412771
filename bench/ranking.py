"""Does a scorer rank the nets the search chooses between? Measured inside one latency band,
against the noise ceiling of stand-alone training (Yu et al., "Evaluating the Search Phase of
Neural Architecture Search", ICLR 2020).

Protocol:

- **Band nets.** ``--nets`` nets drawn uniformly from the band ``[0.9 B, B]`` of ``--space``
  (exact sampler, :func:`nas.core.sampler.random_band_nets`), B = ``--budget`` of the way from
  the space's fastest net to its slowest on ``--table`` (as shipped: the band only has to be
  the same for every scorer).
- **Stand-alone truth.** Every net trained from scratch twice (``--seeds A,B``: initialisation
  and batch order; the data are seed A's training subset for everything) with one recipe, and
  scored on a fixed test set. ``ρ_AB``, the Spearman correlation of the two seeds' test
  accuracies, is the ranking's reliability; the mean of the two has the Spearman–Brown
  reliability ``r = 2 ρ_AB / (1 + ρ_AB)``.
- **Scorers**, each correlated with the two-seed mean and corrected for its noise:
  ``ρ_c = ρ(score, mean) / √r`` (the correlation with a noise-free stand-alone ranking):

  - ``supernet:VARIANT:warmup`` / ``:final``: −held-out loss with the supernet's weights and the
    net's own BatchNorm statistics (:func:`nas.run.verdict.score_net`, as the verdict and the
    final pick score nets), on the supernet after warm-up and at the end of a search with that
    variant's weight paths (``--variants``, each ``name:key=value;key=value`` of
    :class:`nas.SearchConfig`);
  - ``params``, ``macs``: free baselines;
  - ``tournament``: −held-out loss after ``--tournament-epochs`` of stand-alone training (a
    third seed).

- **Intervals**: 95 % bootstrap over the nets (``--draws``), the same draws for every scorer,
  so "scorer − params" is a paired difference.

Every trained net and every scored supernet is cached under ``--out``; a killed run resumes.

    python bench/ranking.py --out runs/ranking
    python bench/ranking.py --out runs/ranking --report
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from fidelity import band_parser, spearman_interval, two_seeds
from quality import ChannelsLast, _cached, heldout_loss, seed_splits, train_and_score
from scipy import stats

from hwnas_common.fileio import atomic_write_text
from latency_predictors import latency_matrix, load_table
from nas import SearchConfig, search
from nas.core.budget import RelativeBudget
from nas.core.constraints import Constraint
from nas.core.parallel import default_device
from nas.core.sampler import random_band_nets
from nas.run import checkpoint
from nas.run.train import Recipe, train_child
from nas.run.verdict import score_net
from search_spaces import ArchSpec, build, get_space
from search_spaces.stats import count_macs, count_params

DEFAULT_VARIANTS = ("uniform:weight_paths=uniform",
                    "band:weight_paths=budget;path_floor=0.9;path_prior=net",
                    "band-family:weight_paths=budget;path_floor=0.9;path_prior=family",
                    "under:weight_paths=budget;path_floor=0;path_prior=net")


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    fields = {}
    for pair in filter(None, body.split(";")):
        key, _, value = pair.partition("=")
        if key not in SearchConfig.__dataclass_fields__:
            raise SystemExit(f"--variants: unknown SearchConfig field {key!r}")
        fields[key] = json.loads(value) if value[:1] in "0123456789-" else value
    return name, fields


def arch_key(spec: ArchSpec) -> str:
    return hashlib.sha1(spec.to_string().encode()).hexdigest()[:12]


def standalone(args, spec, splits, seed: int, out: Path) -> dict:
    recipe = Recipe(args.epochs, args.batch_size, 0.05, 4e-5, seed)
    return _cached(out / f"standalone-{seed}" / f"{arch_key(spec)}.json",
                   lambda: train_and_score(spec, splits, recipe))


def tournament(args, spec, splits, out: Path) -> dict:
    def run() -> dict:
        seed = args.tournament_seed
        torch.manual_seed(seed)
        model = ChannelsLast(build(spec)).to(default_device())
        train_child(model, splits.weight, Recipe(args.tournament_epochs, args.batch_size, 0.05,
                                                 4e-5, seed), progress=False)
        return {"arch": spec.to_string(), "heldout_loss": heldout_loss(model.eval(), splits)}
    return _cached(out / "tournament" / f"{arch_key(spec)}.json", run)


def supernet_scores(args, name: str, fields: dict, nets, splits, limit: Constraint,
                    out: Path) -> dict:
    """−held-out loss of every net on the variant's warm-up and final supernets."""
    def run() -> dict:
        run_dir = out / f"search-{name}"
        config = SearchConfig((args.table,), (limit.budget_ms,), space=args.space,
                              seed=args.seeds[0], out=str(run_dir),
                              warmup_epochs=args.warmup_epochs, epochs=args.search_epochs,
                              batch_size=args.batch_size, select_top=1, verdict_nets=0,
                              keep_warmup=True, progress=False)  # warmup.pt: scored below
        config = replace(config, **fields, resume=(run_dir / "checkpoint.pt").is_file())
        start = time.perf_counter()
        search(config, [limit], data=splits)
        seconds = time.perf_counter() - start
        final = checkpoint.load_supernet(run_dir)
        warm = checkpoint.load_warmup(run_dir, final)
        scores: dict = {"seconds": seconds, "warmup": {}, "final": {}}
        for phase, supernet in (("warmup", warm), ("final", final)):
            for spec in nets:
                score = score_net(supernet, spec, splits, [limit], args.batch_size)
                scores[phase][spec.to_string()] = -score.heldout_loss
        return scores
    return _cached(out / f"supernet-{name}.json", run)


def spearman(a, b) -> float:
    rho = stats.spearmanr(a, b)[0]
    return float(rho) if np.isfinite(rho) else math.nan


def corrected(rho: float, rho_ab: float) -> float:
    """ρ with a noise-free stand-alone ranking: ρ / √(Spearman–Brown reliability of the
    two-seed mean); undefined when the two seeds do not agree at all."""
    if not rho_ab > 0:
        return math.nan
    return rho / math.sqrt(2 * rho_ab / (1 + rho_ab))


def report(out: Path, draws: int) -> str:
    rows = json.loads((out / "rows.json").read_text())
    a = np.array([r["acc_a"] for r in rows])
    b = np.array([r["acc_b"] for r in rows])
    mean = (a + b) / 2
    scorers = [k for k in rows[0] if k not in ("arch", "acc_a", "acc_b", "latency_ms")]
    rng = np.random.default_rng(0)
    boots = [rng.integers(0, len(rows), len(rows)) for _ in range(draws)]
    rho_ab, ab_low, ab_high = spearman_interval(list(a), list(b))
    dropped = sum(not spearman(a[i], b[i]) > 0 for i in boots)
    lines = [f"{len(rows)} band nets; stand-alone test accuracy {100 * mean.mean():.2f} % "
             f"(spread {100 * (mean.max() - mean.min()):.2f} pt, std "
             f"{100 * mean.std(ddof=1):.2f} pt); |seed A − seed B| per net: mean "
             f"{100 * np.abs(a - b).mean():.2f} pt",
             f"noise ceiling: ρ_AB = {rho_ab:+.2f} [{ab_low:+.2f}, {ab_high:+.2f}] (Fisher z, "
             f"Fieller variance); Spearman–Brown reliability of the two-seed mean "
             f"{2 * rho_ab / (1 + rho_ab) if rho_ab > 0 else math.nan:.2f}",
             f"the corrected ρ is undefined in {dropped} of {draws} bootstrap draws (ρ_AB ≤ 0 "
             f"there); its intervals below leave them out, so they validate nothing unless "
             f"this is 0 (nas/run/rankings.py)",
             "",
             "| scorer | ρ with the two-seed mean | corrected ρ (95 % bootstrap) | "
             "corrected ρ − params (95 %) |",
             "|---|---:|---|---|"]
    params = np.array([r["params"] for r in rows])
    for key in scorers:
        score = np.array([r[key] for r in rows])
        rho = spearman(score, mean)
        boot = np.array([corrected(spearman(score[i], mean[i]),
                                   spearman(a[i], b[i])) for i in boots])
        base = np.array([corrected(spearman(params[i], mean[i]),
                                   spearman(a[i], b[i])) for i in boots])
        diff = boot - base
        lines.append(f"| {key} | {rho:+.2f} | {corrected(rho, rho_ab):+.2f} "
                     f"[{np.nanpercentile(boot, 2.5):+.2f}, {np.nanpercentile(boot, 97.5):+.2f}]"
                     f" | {np.nanmean(diff):+.2f} [{np.nanpercentile(diff, 2.5):+.2f}, "
                     f"{np.nanpercentile(diff, 97.5):+.2f}] |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(args.space)
    matrix = latency_matrix(space, load_table(args.table))
    budget = RelativeBudget(args.budget).resolve(matrix.fastest_ms(), matrix.slowest_ms())
    limit = Constraint(matrix, budget, args.table)
    atomic_write_text(out / "settings.json", json.dumps(
        {**vars(args), "budget_ms": budget}, indent=2) + "\n")
    nets = random_band_nets(space, [limit], 0.9, args.nets,
                            torch.Generator().manual_seed(args.net_seed))
    splits = seed_splits(args.dataset, space, args.seeds[0], args.train_images, args.test_images)
    start = time.perf_counter()
    print(f"{args.nets} band nets of {args.space} at {budget:.4g} ms on {args.table} "
          f"({100 * args.budget:g} %)", flush=True)
    truth = {}
    for index, spec in enumerate(nets):
        rows = [standalone(args, spec, splits, seed, out) for seed in args.seeds]
        truth[spec.to_string()] = [r["test_acc"] for r in rows]
        print(f"  {index} {spec.to_string()}: {[round(r['test_acc'], 4) for r in rows]} "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    tour = {spec.to_string(): -tournament(args, spec, splits, out)["heldout_loss"]
            for spec in nets}
    print(f"  tournament done [{time.perf_counter() - start:.0f} s]", flush=True)
    supernets = {}
    for text in args.variants:
        name, fields = parse_variant(text)
        supernets[name] = supernet_scores(args, name, fields, nets, splits, limit, out)
        print(f"  supernet {name} done ({supernets[name]['seconds']:.0f} s search) "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    rows = []
    for spec in nets:
        arch = spec.to_string()
        model = build(spec)
        row = {"arch": arch, "acc_a": truth[arch][0], "acc_b": truth[arch][1],
               "latency_ms": matrix.total([space.candidate_index(layer)
                                           for layer in spec.layers])}
        for name, scores in supernets.items():
            row[f"supernet:{name}:warmup"] = scores["warmup"][arch]
            row[f"supernet:{name}:final"] = scores["final"][arch]
        row.update({"params": count_params(model), "macs": count_macs(model, space.input),
                    "tournament": tour[arch]})
        rows.append(row)
    atomic_write_text(out / "rows.json", json.dumps(rows, indent=1) + "\n")
    text = report(out, args.draws)
    atomic_write_text(out / "report.md", text + "\n")
    print(text)


def main() -> None:
    parser = band_parser(__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--nets", type=int, default=20)
    parser.add_argument("--net-seed", type=int, default=7)
    parser.add_argument("--seeds", type=two_seeds, default="100,101",
                        help="the two stand-alone seeds A,B")
    parser.add_argument("--tournament-seed", type=int, default=102)
    parser.add_argument("--tournament-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3, help="stand-alone training epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--test-images", type=int, default=5000)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument("--variants", nargs="*", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.report:
        print(report(Path(args.out), args.draws))
        return
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
