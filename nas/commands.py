"""CLI subcommands of nas: ``hwnas search``, ``hwnas export`` and ``hwnas sweep``."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from hwnas_common import HwnasError
from hwnas_common.cli_types import fraction, int_at_least, number_at_least, positive_number
from hwnas_common.outputs import check_output_file
from latency_predictors import load_table
from latency_predictors.measure.adapt import ESTIMATED_NOT_ADAPTED, NO_ADAPT_HELP, host_true_table
from latency_predictors.metadata import precision_of
from nas.core.budget import parse_budget_requests, parse_budgets
from nas.core.config import PATH_PRIORS, WEIGHT_PATHS, SearchConfig, default_run_dir
from nas.core.constraints import load_constraints
from nas.core.latency_loss import LOSSES, LatencyLoss
from nas.deploy.export import FORMATS, export_model
from nas.deploy.quantized import CALIBRATION_IMAGES, INT8_TABLE, MAX_DROP, export_quantized
from nas.deploy.retrain import INITS, inherited_child, retrain, run_config, train_arch
from nas.run.distributed import is_distributed, is_main_process
from nas.run.search import search
from nas.run.trained import MODEL_FILE, load_finetuned, load_trained, save_trained
from nas.tune.calibrate_budget import calibrate_strength
from nas.tune.sweep_run import sweep_run
from search_spaces import CHOICE_MODES, get_space, read_arch

SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "json": ".json", "pt": ".pt"}
_CONFIG_FLAGS = ("space", "dataset", "epochs", "warmup_epochs", "batch_size", "micro_batches",
                 "loss", "loss_strength", "seed", "data_limit", "resume", "weights", "arch_lr",
                 "arch_every", "retrain_epochs", "retrain_images", "checkpoint_minutes",
                 "budget_floor", "arch_batches", "arch_beta1", "choices", "weight_paths",
                 "path_floor", "path_prior",
                 "select_top", "verdict_nets", "confidence")


def _search(args: argparse.Namespace) -> int:
    devices = tuple(name.strip() for name in args.device.split(","))
    requests = tuple(parse_budget_requests(args.budget))
    fields = {k: getattr(args, k) for k in _CONFIG_FLAGS if getattr(args, k) is not None}
    space = fields.get("space", SearchConfig.space)
    fields["out"] = args.out or default_run_dir(fields.get("dataset", "fashion-mnist"), space,
                                                devices, args.budget)
    main = is_main_process()  # under torchrun, rank 0 alone reports
    # under torchrun every rank must use the same table: only a cached adaptation
    constraints = load_constraints(get_space(space), devices, requests, not args.no_adapt,
                                   main, not is_distributed(),
                                   fields.get("confidence", SearchConfig.confidence))
    # relative budgets resolved here; the margin is applied again from the table on resume
    budgets = tuple(c.budget_asked_ms for c in constraints)
    preset = SearchConfig.quick if args.quick else SearchConfig.short if args.short else None
    config = (preset or SearchConfig)(devices, budgets, **fields)
    precisions = {d: precision_of(load_table(d).metadata) for d in devices}
    for c in constraints:
        if c.estimated and main:
            print(f"note: table {c.source!r} ({c.device}, {precisions[c.source]}) is ESTIMATED "
                  "by an analytical model "
                  f"({c.metadata.get('anchoring', 'a-priori, unanchored')}), not measured on the "
                  f"device; {ESTIMATED_NOT_ADAPTED}")
        elif main and c.note:
            print(c.note)
        if main and c.budget_line():
            print(c.budget_line())
        if main:
            print(c.margin_line())
        slowest = c.matrix.slowest_ms()
        if main and c.budget_ms >= slowest:
            print(f"note: budget {c.budget_ms:g} ms is above the slowest net of {config.space} "
                  f"on {c.source!r} ({slowest:.3g} ms), so it constrains nothing")
    if args.calibrate_budget is not None:
        result = calibrate_strength(config, constraints, args.calibrate_budget)
    else:
        result = search(config, constraints)
    if result is None:
        return 0
    print(f"architecture: {result.spec.to_string()}")
    under = {c.source: c.budget_ms for c in constraints if c.margin > 0}
    for table, ms in result.latency_ms.items():
        margin = f", derived under {under[table]:.4g} ms" if table in under else ""
        print(f"predicted latency on {table}: {ms:.4g} ms (budget {result.budgets_ms[table]:.4g}"
              f" ms{margin})")
    print(f"test accuracy, supernet weights inherited, BatchNorm re-estimated, not retrained: "
          f"{result.test_accuracy:.4f}")
    if result.retrained_accuracy is not None:
        epochs = f"{config.retrain_epochs} epoch{'s' if config.retrain_epochs != 1 else ''}"
        print(f"test accuracy after fine-tuning {epochs} from the inherited weights: "
              f"{result.retrained_accuracy:.4f} (the net: {result.run_dir / MODEL_FILE})")
    if result.verdict is not None:
        print(result.verdict["line"])
    if (chosen := result.calibration) is not None:
        print(f"calibrated {config.loss} strength: {chosen['strength']:.4g} (|E[LAT]/budget - 1|"
              f" = {chosen['abs_budget_gap']:.3f}, best of {chosen['trials']} trials; "
              f"{chosen['csv']})")
    finetuned = result.retrained_accuracy is not None
    trained = f"{MODEL_FILE} (the fine-tuned net); " if finetuned else ""
    print(f"run directory: {result.run_dir}/ ({trained}arch.json; metrics.csv; latency.json|csv "
          "per layer; accuracy, latency, arch and probs .png; summary.json; checkpoint.pt)")
    int8 = next((d for d in devices if precisions[d] == "int8"), None)
    quantize = " --quantize int8" if int8 else ""
    export = (f"hwnas export {result.run_dir} --format onnx{quantize} (exports {MODEL_FILE})"
              if finetuned else f"hwnas export {result.run_dir} --format onnx --train-epochs 5")
    measure = f" --device {int8}" if int8 else ""
    print(f"next: {export}  |  hwnas measure {result.run_dir}{measure}  |  hwnas sweep "
          f"{result.run_dir} --device {config.devices[0]} --budgets ...")
    return 0


def _train(args: argparse.Namespace) -> int:
    spec = read_arch(args.arch)
    init = None if args.init == "scratch" else inherited_child(Path(args.init), spec)
    source = Path(args.arch)
    out = Path(args.out) if args.out else (source / "trained.pt" if source.is_dir()
                                           else source.with_suffix(".pt"))
    if out.resolve() == source.resolve():
        raise HwnasError(f"--out {out} is the architecture being trained; choose another --out")
    check_output_file(out, args.force)
    trained = train_arch(spec, args.dataset, args.epochs, init, args.batch_size, args.seed,
                         args.data_limit, augment=args.augment)
    save_trained(out, spec, trained.model, trained.test_accuracy,
                 {"dataset": args.dataset, "epochs": args.epochs, "init": args.init,
                  "seed": args.seed, "data_limit": args.data_limit, "augment": args.augment})
    print(f"trained {spec.to_string()} for {args.epochs} epochs from "
          f"{'scratch' if init is None else 'the weights of ' + args.init}: test accuracy "
          f"{trained.test_accuracy:.4f}")
    print(f"wrote {out}; export it with: hwnas export {out} --format onnx")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.quantize:
        return _export_quantized(args)
    source = Path(args.arch)
    if source.suffix == ".pt" and source.is_file():  # weights from `hwnas train`
        spec, model = load_trained(source)
        out = Path(args.out) if args.out else source.with_suffix(SUFFIXES[args.format])
    elif source.is_dir() and args.train_epochs is None:  # the net the search fine-tuned
        net = load_finetuned(source)
        spec, model = net.spec, net.model
        print(f"exporting the fine-tuned net {net.path} ({net.describe()})")
        out = Path(args.out) if args.out else source / f"model{SUFFIXES[args.format]}"
        source = net.path
    elif source.is_dir():
        out = Path(args.out) if args.out else source / f"model{SUFFIXES[args.format]}"
        if out.resolve() == (source / MODEL_FILE).resolve():  # keep the search's fine-tuned net
            out = out.with_name(f"{out.stem}-export{out.suffix}")
        check_output_file(out, args.force)  # before minutes of training
        print(f"training {args.train_epochs} epochs from {args.init} weights on the search's "
              "training data (its data set and --data-limit), as asked by --train-epochs")
        trained = retrain(source, args.train_epochs, args.init)
        spec, model = trained.spec, trained.model
        print(f"retrained {trained.epochs} epochs from {trained.init} weights on "
              f"{trained.images:,} {trained.dataset} training images: test accuracy "
              f"{trained.test_accuracy:.4f}")
    else:
        spec, model = read_arch(source), None
        out = Path(args.out) if args.out else source.with_suffix(SUFFIXES[args.format])
    if out.resolve() == source.resolve():  # never overwrite the input
        out = out.with_name(f"{out.stem}-export{out.suffix}")
    check_output_file(out, args.force)
    result = export_model(spec, model, args.format, out)
    line = f"wrote {result.path} ({result.format})"
    if model is None and args.format != "json":
        line += ("; weights: random initialisation (an architecture file carries no weights: "
                 "export a search RUN_DIR for trained ones)")
    if result.max_abs_error is not None:
        line += f"; max abs error vs PyTorch: {result.max_abs_error:.3g}"
    print(line)
    return 0


def _export_quantized(args: argparse.Namespace) -> int:
    """``export --quantize int8``: the trained net quantized, and what that cost."""
    if args.format != "onnx":
        raise HwnasError(f"--quantize {args.quantize} writes ONNX, not {args.format}: pass "
                         "--format onnx")
    if args.train_epochs is not None:
        raise HwnasError("--quantize quantizes the trained net as it is, without "
                         "--train-epochs: train it first (hwnas train RUN_DIR/arch.json --init "
                         "RUN_DIR), then quantize that MODEL.pt")
    source = Path(args.arch)
    out = Path(args.out) if args.out else (
        source / "model-int8.onnx" if source.is_dir() else source.with_name(
            f"{source.stem}-int8.onnx"))
    check_output_file(out, args.force)
    if args.qat_epochs:
        print(f"fine-tuning {args.qat_epochs} epoch{'s' if args.qat_epochs != 1 else ''} with "
              "fake int8 quantization before the export, as asked by --qat-epochs")
    result = export_quantized(source, out, args.calibration_images, args.max_drop,
                              args.qat_epochs, args.device)
    print("\n".join(result.lines()))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise HwnasError(f"{run_dir}: no such run directory")
    budgets = parse_budgets(args.budgets)
    hosted = host_true_table(load_table(args.device), [run_config(run_dir)["space"]],
                             not args.no_adapt)
    if hosted.note:
        print(hosted.note)
    device = str(hosted.path) if hosted.path else args.device  # the adaptation, cached
    done = sweep_run(run_dir, device, budgets, args.trials, args.out, args.seed, args.storage,
                     args.study)
    tag = " [ESTIMATED latency table]" if done.estimated else ""
    for budget, best in done.result.best.items():
        for label, p in (("sweep best", best), ("ProxylessNAS-derived", done.derived[budget])):
            line = "nothing fits" if p is None else (
                f"{p.spec.to_string()}  acc {p.accuracy:.4f}  {p.latency_ms:.4g} ms")
            print(f"{label} within {budget:g} ms{tag}: {line}")
    print(f"wrote {done.out}/ (trials.csv, pareto.csv, pareto.png, best_*ms.json, sweep.json)")
    return 0


def _per_loss(describe: Callable[[str, LatencyLoss], str]) -> str:
    """One phrase per registered latency loss, for the help text."""
    return ", ".join(describe(name, loss) for name, loss in LOSSES.items())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="ProxylessNAS search under latency budgets")
    p.add_argument("--space", help=f"search space (default {SearchConfig.space})")
    p.add_argument("--dataset", help="fashion-mnist (default), cifar10, synthetic or a PATH")
    p.add_argument("--device", required=True, help="latency table name(s) or path(s), comma "
                   "separated")
    p.add_argument("--budget", required=True, help="budget(s) per device, e.g. 30ms,3ms, or "
                   "relative: 15%% = 15 %% of the way from the space's fastest net to its "
                   "slowest on that device (the milliseconds are printed and saved)")
    defaults = {f.name: f.default for f in dataclasses.fields(SearchConfig)}
    for flag, low, what in (("epochs", 1, "search epochs after warm-up"),
                            ("warmup-epochs", 0, "weight-only epochs first, no architecture "
                             "steps (0: none)"),
                            ("batch-size", 1, "global batch"),
                            ("seed", 0, "seeds data split and paths"),
                            ("data-limit", 2, "cap on train and test images (default: all)")):
        default = defaults[flag.replace("-", "_")]
        p.add_argument(f"--{flag}", type=int_at_least(low), help=what if default is None
                       else f"{what} (default {default})")
    p.add_argument("--weights", help="supernet weights: shared "
                   "(entangled: one set per family, sliced per kernel and expansion; default) "
                   "or separate (one set per candidate)")
    p.add_argument("--arch-lr", type=positive_number(),
                   help="Adam lr of α (default: scheduled so that lr "
                   "× architecture steps = 10)")
    p.add_argument("--arch-every", type=int_at_least(1), help="weight steps per architecture step "
                   "(default 5)")
    p.add_argument("--arch-batches", type=int_at_least(1),
                   help="held-out batches (comparisons, each "
                   "with its own sampled paths) averaged into one architecture step (default 2; "
                   "ProxylessNAS: 1)")
    p.add_argument("--arch-beta1", type=fraction(), help="Adam β1 of the architecture step "
                   "(default 0, ProxylessNAS)")
    p.add_argument("--choices", choices=CHOICE_MODES, help="α per layer: family (default: "
                   "skip / interaction type / MBConv, then kernel and expansion) or flat (one "
                   "softmax over every candidate, ProxylessNAS)")
    p.add_argument("--weight-paths", choices=WEIGHT_PATHS, help="paths of the weight steps: "
                   "budget (default: every step, warm-up too, trains a net drawn exactly among "
                   "those the budgets admit), uniform (over the whole space) or p (from p after "
                   "warm-up, ProxylessNAS)")
    p.add_argument("--path-floor", type=fraction(), help="budget paths use at least this share "
                   f"of every budget (default {defaults['path_floor']:g}; 0: every net under "
                   "the budgets)")
    p.add_argument("--path-prior", choices=PATH_PRIORS, help="budget paths: uniform over the "
                   f"admitted nets (net) or weighted by the choice tree (family); default "
                   f"{defaults['path_prior']}")
    p.add_argument("--select-top", type=int_at_least(1),
                   help="score this many band nets under p on "
                   "the supernet and return the one with the lowest held-out loss (default 8; "
                   "1: the knapsack's most probable net)")
    p.add_argument("--verdict-nets", type=int_at_least(0), help="random band nets the found net is "
                   "scored against by the verdict (default 8; 0: no verdict)")
    p.add_argument("--retrain-epochs", type=int_at_least(0), help="fine-tune the found net from "
                   "its inherited weights for this many epochs and report its accuracy (default "
                   "0: no fine-tuning)")
    p.add_argument("--retrain-images", type=int_at_least(2),
                   help="fine-tune on this many training images "
                   "(default: the search's weight split)")
    p.add_argument("--micro-batches", type=int_at_least(1), help="split each batch into this many "
                   "shards (gradient accumulation; default 1); under torchrun, per process")
    p.add_argument("--loss", choices=sorted(LOSSES), help="latency loss (default "
                   f"{defaults['loss']})")
    p.add_argument("--loss-strength", type=positive_number(), help=_per_loss(
        lambda name, loss: f"{loss.strength} of {name} (default {loss.default:g})"))
    p.add_argument("--budget-floor", type=fraction(), help="derive the most probable net that "
                   "uses at least this share of every budget, when one exists (default 0.9; 0: "
                   "the most probable net under the budget)")
    p.add_argument("--confidence", type=fraction(), help="derive under the budget less the "
                   "table's margin at this confidence, so the net measures within the budget "
                   "with this probability by the table's stated error (default 0.95; 0: under "
                   "the budget as it is)")
    p.add_argument("--calibrate-budget", type=int_at_least(1), metavar="TRIALS",
                   help="tune the loss "
                   "strength with Optuna over TRIALS searches so E[LAT] lands at the budget "
                   "(log scale: " + _per_loss(lambda name, loss: f"{loss.strength} of {name} in "
                                              "[{:g}, {:g}]".format(*loss.search_range)) + ")")
    p.add_argument("--out", help="run directory (default runs/DATA-SPACE-DEVICES-BUDGETS)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue the run in --out from its checkpoint")
    p.add_argument("--checkpoint-minutes", type=number_at_least(0),
                   help="also checkpoint within an epoch "
                   "this often, so a kill loses minutes, not an epoch (default 5; 0: after "
                   "every step)")
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration (1 + 2 "
                   "epochs on 512 images, ~1 min)")
    p.add_argument("--no-adapt", action="store_true", help=NO_ADAPT_HELP)
    p.add_argument("--short", action="store_true", help="the README's main job: 1 + 2 epochs "
                   "on 3,000 images, then fine-tuning the found net for 1 epoch on 25,000 "
                   "(~5 min)")
    p.set_defaults(func=_search)
    p = subparsers.add_parser("train", help="train any architecture (from scratch or from a "
                              "search run's supernet) and save its weights")
    p.add_argument("arch", help="ArchSpec JSON file (e.g. a sweep's best_*.json) or RUN_DIR")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), "
                   "cifar10, synthetic or a PATH")
    p.add_argument("--epochs", type=int_at_least(1), default=5, help="(default 5)")
    p.add_argument("--init", default="scratch", help="scratch (default), or a search RUN_DIR "
                   "whose supernet weights the net inherits")
    p.add_argument("--batch-size", type=int_at_least(1), default=64, help="(default 64)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="(default 0)")
    p.add_argument("--data-limit", type=int_at_least(2), help="cap on train and test images")
    p.add_argument("--augment", action="store_true", help="random crop and flip (off by "
                   "default: in 1-5 epoch trainings they cost 5-7 points on Fashion-MNIST)")
    p.add_argument("--out", help="weights file (default ARCH.pt, or RUN_DIR/trained.pt: a "
                   "run's model.pt is the net its search fine-tuned)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (never a "
                   "search run's own files)")
    p.set_defaults(func=_train)
    p = subparsers.add_parser("export", help="export an architecture (ONNX, TorchScript, ...); "
                              f"a RUN_DIR exports the net its search fine-tuned ({MODEL_FILE})")
    p.add_argument("arch", help="ARCH.json, a MODEL.pt from `hwnas train`, or a search RUN_DIR "
                   f"(its {MODEL_FILE})")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="(default onnx)")
    p.add_argument("--out", help="output file (default: next to ARCH.json / in RUN_DIR)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (never a "
                   "search run's own files)")
    p.add_argument("--train-epochs", type=int_at_least(0), help="RUN_DIR only: train the run's "
                   "net for N epochs on the search's training data instead of exporting its "
                   f"{MODEL_FILE} (0: its inherited weights, untrained)")
    p.add_argument("--init", choices=INITS, default="inherit", help="RUN_DIR with "
                   "--train-epochs: start from the supernet's weights (default) or scratch")
    p.add_argument("--quantize", choices=["int8"], help="RUN_DIR or MODEL.pt: write the net "
                   "quantized to int8 as the cpu-int8 table times it (static, QDQ, per-channel "
                   "int8 weights, uint8 activations; default out RUN_DIR/model-int8.onnx) and "
                   "report fp32 and int8 test accuracy, their top-1 agreement and the int8 "
                   "latency here next to the table's prediction")
    p.add_argument("--calibration-images", type=int_at_least(1), default=CALIBRATION_IMAGES,
                   help="--quantize: training images the int8 ranges are calibrated on "
                   f"(default {CALIBRATION_IMAGES})")
    p.add_argument("--max-drop", type=number_at_least(0), default=MAX_DROP, metavar="POINTS",
                   help="--quantize: test accuracy post-training int8 may lose before the "
                   f"export says so and names --qat-epochs (default {MAX_DROP:g} point; 0: "
                   "report any drop)")
    p.add_argument("--qat-epochs", type=int_at_least(0), default=0, help="--quantize: first "
                   "fine-tune the net this many epochs with fake int8 quantization on its "
                   "training data, and write that net (default 0: post-training only)")
    p.add_argument("--device", default=INT8_TABLE, help="--quantize: the int8 table whose "
                   f"prediction is shown (default {INT8_TABLE})")
    p.set_defaults(func=_export)
    p = subparsers.add_parser("sweep", help="NSGA-II budget sweep on a searched supernet")
    p.add_argument("run_dir", help="a search RUN_DIR (its supernet and data are reused)")
    p.add_argument("--device", required=True, help="latency table name or path")
    p.add_argument("--budgets", required=True, help="comma-separated, e.g. 10ms,20ms,30ms")
    p.add_argument("--trials", type=int_at_least(1), default=100, help="trials added by this "
                   "worker (default 100)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="(default 0)")
    p.add_argument("--storage", help="Optuna RDB URL shared by workers, e.g. sqlite:///s.db")
    p.add_argument("--study", help="study name inside --storage")
    p.add_argument("--out", help="output folder (default RUN_DIR/sweep-DEVICE)")
    p.add_argument("--no-adapt", action="store_true", help=NO_ADAPT_HELP)
    p.set_defaults(func=_sweep)
