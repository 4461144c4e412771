"""CLI subcommands of latency_predictors: profile, tables, predict, measure, validate.

Each subcommand parses, calls the public API, prints and returns an exit code; every output
that uses an estimated table says ESTIMATED.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hwnas_common import HwnasError
from hwnas_common.cli_types import fraction, int_at_least
from hwnas_common.outputs import check_output_file
from search_spaces import SPACES, get_space, read_arch

from .estimate.anchors import device_anchors, load_anchors
from .fit import DEFAULT_CONFIDENCE, fit_table, read_timings, table_error
from .fit.fitting import load_priors
from .measure.adapt import (
    ADAPT_NETS,
    ESTIMATED_NOT_ADAPTED,
    NO_ADAPT_HELP,
    adapt_table,
    check_writable,
    host_true_table,
)
from .measure.backends import BACKENDS, TIMED_PRECISIONS, make_backend
from .measure.calibrate import CV_FOLDS, describe_calibration
from .measure.host import (
    describe_host,
    host_fingerprint,
    host_mismatch,
    same_host,
    table_of_this_host,
)
from .measure.networks import measure_latency, table_reference_ms
from .measure.profile import (
    PROFILE_PASSES,
    PROFILE_REPEATS,
    default_out,
    describe_pass_spread,
    profile_device,
)
from .measure.quantize import describe_recipe
from .measure.validate import SAMPLERS, validate_table
from .metadata import precision_of
from .predictor import check_coverage, predict_latency
from .store import known_tables, load_table, save_table
from .table import LatencyTable, describe_anchoring

DEFAULT_TABLE = "cpu"  # measure's table when none of this host covers the space
DEFAULT_TABLES = {"fp32": DEFAULT_TABLE, "int8": "cpu-int8"}  # the same, per precision
_ESTIMATED = ("ESTIMATED: this table comes from an analytical device model, not from "
              "measurements on the device")


def _warn_estimated(table) -> None:
    if table.estimated:
        print(f"{_ESTIMATED} ({table.device}; "
              f"{describe_anchoring(table.metadata.get('anchoring'))}); {ESTIMATED_NOT_ADAPTED}.")


def _warn_other_host(table: LatencyTable) -> None:
    note = host_mismatch(table)
    if note:
        print(note)


def _profile(args: argparse.Namespace) -> int:
    print(profile_device(args.space.split(","), args.backend, args.ep, args.name, args.out,
                         args.repeats, args.warmup, args.threads, args.method, args.passes,
                         args.calibrate, not args.quiet, args.precision).format())
    return 0


def _tables(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in known_tables():
            print(load_table(name).describe())
        return 0
    if args.target is None:
        raise HwnasError(f"hwnas tables {args.action} needs a table name or file")
    if args.action == "adapt":
        return _adapt(args)
    if args.action == "anchors":
        return _anchors(args)
    if args.action == "fit":
        return _fit(args)
    table = load_table(args.target)
    print(table.describe())
    _warn_estimated(table)
    if args.action == "show":
        if table.metadata.get("host_fingerprint"):
            print(f"  measured on {describe_host(table.metadata['host_fingerprint'])}")
        if reference := table.metadata.get("reference"):
            print(f"  reference kernel ({reference['kernel']}): {reference['ms']:.4f} ms, "
                  f"drifted {reference['range_pct']:.1f} % (5th-95th percentile) while "
                  "measured; measurements are normalised to it")
        _warn_other_host(table)
        error = table.metadata.get("analytical_error")
        if error and "whole_network_mape_apriori" in error:
            print(f"  model error on {error['device']}: whole-network MAPE "
                  f"{error['whole_network_mape_apriori']:.1f} % with datasheet parameters, "
                  f"{error.get('whole_network_mape_fitted', float('nan')):.1f} % with "
                  "efficiencies fitted there")
        if table.estimated:
            print(f"  {_anchoring_summary(table)}")
        for space in table.metadata["spaces"]:
            print(f"  {space}: {_space_summary(table, space)}")
        print(table.frame.to_string(index=False, max_rows=args.rows))
        return 0
    for space in table.metadata["spaces"]:
        if space in SPACES:
            check_coverage(get_space(space), table)
    print(f"OK: {args.target} is a valid table covering {table.metadata['spaces']}")
    return 0


def _anchoring_summary(table: LatencyTable) -> str:
    """One line: the estimated table's anchoring (anchors, parameters, leave-one-out MAPE)."""
    anchoring = table.metadata.get("anchoring")
    if not anchoring:
        return ("a-priori, unanchored: datasheet parameters, no published latency to fit on "
                "(hwnas tables anchors lists the devices that have some)")
    return (f"{describe_anchoring(anchoring)} (in-sample {anchoring['fit_mape']:.1f} %); "
            f"fitted parameters {anchoring['params']}; per anchor: hwnas tables anchors "
            f"{table.device}")


def _anchors(args: argparse.Namespace) -> int:
    """The published latencies of one device, and what its estimated table predicts for them."""
    anchors = load_anchors(args.anchors)
    fitted = device_anchors(args.target, anchors)
    others = [a for a in anchors if a.device == args.target and not a.fit]
    table = next((load_table(n) for n in known_tables() if n == args.target), None)
    anchoring = (table.metadata.get("anchoring") or {}) if table is not None else {}
    predicted = {(a["net"], a["published_ms"]): a for a in anchoring.get("anchors", [])}
    print(f"{args.target}: {len(fitted)} anchors fitted on, {len(others)} for reference only; "
          f"table: {describe_anchoring(anchoring) if table is not None else 'none'}")
    for a in fitted:
        row = predicted.get((a.net, a.latency_ms))
        fit = (f"; table fit {row['fitted_ms']:.2f} ms, leave-one-out {row['loo_ms']:.2f} ms"
               if row else "")
        print(f"  {a.net}: {a.latency_ms:g} ms ({a.runtime}, {a.precision}){fit} [{a.source}: "
              f"{a.where}]")
    for a in others:
        print(f"  (not fitted) {a.net}: {a.latency_ms:g} ms ({a.runtime}) [{a.source}]: "
              f"{a.notes}")
    return 0


def _adapt(args: argparse.Namespace) -> int:
    if not args.name:
        raise HwnasError("hwnas tables adapt needs --name for the adapted table")
    source = load_table(args.target)
    spaces = args.space.split(",")
    out = Path(args.out) if args.out else default_out(args.name)
    check_writable(out)  # before minutes of measuring
    adapted = adapt_table(source, spaces, args.n, progress=not args.quiet)
    for space in spaces:
        calib = adapted.calibration(space)
        print(f"adapted {space}: {describe_calibration(calib)}; cross-validated MAPE "
              f"{calib['mape_before']:.2f} % -> {calib['mape_after']:.2f} %, within ±10 %: "
              f"{calib['within_10pct_after']:.0f} % ({calib['fitted_on_n']} nets)")
    path = save_table(adapted, out)
    print(f"wrote {path} in {adapted.metadata['adapted_from']['seconds']:.0f} s; search with "
          f"--device {args.name}; check it on fresh nets: hwnas validate --device {args.name} "
          f"--sampler spread")
    return 0


def _fit(args: argparse.Namespace) -> int:
    if not args.device:
        raise HwnasError("hwnas tables fit needs --device, the name of the timed device")
    space = get_space(args.space)
    name = args.name or args.device
    out = Path(args.out) if args.out else default_out(name)
    check_writable(out)
    timings = read_timings(args.target, space)
    priors = load_priors(space, args.prior.split(",") if args.prior != "all" else None,
                         not args.no_roofline)
    result = fit_table(timings, space, priors, args.device, name, args.runtime)
    calib = result.table.calibration(space.name)
    print(f"fitted {args.device} for {space.name} on {len(timings)} timed nets in "
          f"{result.seconds:.2f} s: prior {result.chosen} of {len(result.scores)} candidates "
          f"(cross-validated MAPE {min(result.scores.values()):.2f} %), offset "
          f"{calib['offset_ms']:+.4f} ms")
    print(f"error: {result.error.describe(args.confidence)}")
    path = save_table(result.table, out)
    print(f"wrote {path}; search with --device {name} (it derives under the budget / "
          f"{1 + result.error.margin(args.confidence):.3f})")
    return 0


def _space_summary(table: LatencyTable, space: str) -> str:
    """One line per space: profiling time and pass agreement, calibration and its accuracy."""
    meta = table.metadata
    parts = []
    if space in (meta.get("profile_seconds") or {}):
        parts.append(f"profiled in {meta['profile_seconds'][space]:.1f} s")
    spread = (meta.get("pass_spread") or {}).get(space)
    if spread:
        parts.append(describe_pass_spread(spread))
    calib = table.calibration(space)
    error = table_error(table, space)
    if calib is None:
        parts.append("uncalibrated")
    elif table.metadata.get("provenance") == "fitted":
        parts.append(f"fitted {calib['prior']}/{calib['model']} on {calib['fitted_on_n']} timed "
                     f"nets, offset {calib['offset_ms']:+.4f} ms")
    else:
        parts.append(f"calibration {describe_calibration(calib)}")
        if "mape_after" in calib:
            parts.append(f"cross-validated MAPE {calib['mape_before']:.2f} % -> "
                         f"{calib['mape_after']:.2f} %, within ±10 % "
                         f"{calib['within_10pct_after']:.0f} % ({calib['fitted_on_n']} nets)")
    parts.append(f"error {error.describe()}" if error is not None else "no stated error")
    return "; ".join(parts)


def _host_table(name: str, space: str, args: argparse.Namespace) -> LatencyTable:
    """The table ``name``, true to this host for ``space`` (adapted unless --no-adapt); its
    one line, if any, printed."""
    hosted = host_true_table(load_table(name), [space], not args.no_adapt)
    if hosted.note:
        print(hosted.note)
    return hosted.table


def _predict(args: argparse.Namespace) -> int:
    spec = read_arch(args.arch)
    table = _host_table(args.device, spec.space, args)
    print(predict_latency(spec, table).format())
    _warn_estimated(table)
    return 0


def _measure(args: argparse.Namespace) -> int:
    spec = read_arch(args.arch)
    get_space(spec.space).validate(spec)
    named = load_table(args.device) if args.device else None
    precision = args.precision or (precision_of(named.metadata) if named else "fp32")
    if named is not None and precision_of(named.metadata) != precision:
        raise HwnasError(f"table {args.device!r} is {precision_of(named.metadata)}, the net is "
                         f"measured {precision}: pass --precision "
                         f"{precision_of(named.metadata)}, or a {precision} table as --device")
    backend = make_backend(args.backend, args.ep, args.threads, args.warmup, args.repeats,
                           precision)
    stats = measure_latency(spec, backend)
    quantized = "" if precision == "fp32" else f", {precision} quantized: {describe_recipe()}"
    print(f"measured {spec.space} architecture with {backend.mode} ({args.threads} threads"
          f"{quantized}): median {stats['median_ms']:.4f} ms, mean {stats['mean_ms']:.4f} ms, "
          f"std {stats['std_ms']:.4f} ms over {stats['samples']} runs")
    default = DEFAULT_TABLES.get(precision, DEFAULT_TABLE)
    local = table_of_this_host(spec.space, precision) if not args.device else None
    if not (args.device or local or (default in known_tables() and spec.space
                                     in load_table(default).metadata["spaces"])):
        what = "" if precision == "fp32" else f"{precision} "
        print(f"no {what}table measured on this host, nor the {default!r} table, covers this "
              "space: pass --device TABLE to see a prediction (hwnas tables list)")
        return 0
    table = local or _host_table(args.device or default, spec.space, args)
    predicted = predict_latency(spec, table).total_ms
    error = (predicted / stats["median_ms"] - 1) * 100
    print(f"predicted by table {table.name or table.device!r}: {predicted:.4f} ms "
          f"({error:+.1f} % vs measured here now)")
    recorded = table.metadata.get("host_fingerprint")
    if (then := table_reference_ms(table)) is not None and recorded is not None:
        now = float(np.median([backend.reference_ms() for _ in range(5)]))
        if same_host(recorded, host_fingerprint()):
            at_then = stats["median_ms"] * then / now
            print(f"drift-normalised (reference kernel {now:.4f} ms now, {then:.4f} ms when "
                  f"the table was made on this host): the net takes {at_then:.4f} ms at that "
                  f"speed (prediction {(predicted / at_then - 1) * 100:+.1f} %)")
        else:
            print(f"the table is foreign: profiled on {describe_host(recorded)}; its reference "
                  f"kernel took {then:.4f} ms there and {now:.4f} ms here ({now / then:.2f}×)")
    _warn_estimated(table)
    return 0


def _validate(args: argparse.Namespace) -> int:
    if args.out:  # before minutes of measuring
        for name in ("validation.csv", "validation.png"):
            check_output_file(Path(args.out) / name, args.force)
    table = load_table(args.device)
    _warn_estimated(table)
    _warn_other_host(table)
    result = validate_table(table, args.space, n=args.n, seed=args.seed,
                            progress=not args.quiet, sampler=args.sampler)
    print(result.format())
    if args.out:
        csv_path, png_path = result.save(args.out)
        print(f"wrote {csv_path} and {png_path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
    p = subparsers.add_parser("profile", help="measure a device's latency table")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="onnxruntime",
                   help="(default onnxruntime)")
    p.add_argument("--ep", default=None, help="; ".join(
        f"{name}: {backend.ep_help}" for name, backend in BACKENDS.items()))
    p.add_argument("--space", default="cifar", help="space name(s), comma-separated "
                   "(default cifar)")
    p.add_argument("--name", required=True, help="device name of the table")
    p.add_argument("--out", default=None, help="table path (NAME.csv + NAME.json); default "
                   "$HWNAS_TABLES/NAME.csv or ~/.hwnas/tables/NAME.csv")
    p.add_argument("--repeats", type=int_at_least(1), default=PROFILE_REPEATS,
                   help=f"timed runs per op and pass (default {PROFILE_REPEATS})")
    p.add_argument("--warmup", type=int_at_least(0), default=10, help="untimed runs first "
                   "(default 10; 0: none)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="runtime threads "
                   "(default 1)")
    p.add_argument("--passes", type=int_at_least(1), default=PROFILE_PASSES,
                   help="round-robin passes over the ops; each op keeps its median pass after "
                   f"normalising by the reference kernel (default {PROFILE_PASSES})")
    p.add_argument("--method", choices=["chain", "alone"], default="alone",
                   help="alone: each op timed by itself (default); chain: candidates timed as "
                   "(T(4 copies) - T(2 copies)) / 2")
    p.add_argument("--calibrate", type=int_at_least(0), default=0, metavar="N",
                   help="fit the whole-network calibration on N random architectures "
                   "(default 0: none; 40 is a good start)")
    p.add_argument("--precision", choices=TIMED_PRECISIONS, default="fp32", help="fp32 "
                   "(default), or int8: every op and net timed as ONNX Runtime runs it after "
                   "static quantization (QDQ, per-channel int8 weights, uint8 activations)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_profile)

    p = subparsers.add_parser("tables", help="list, show, check, adapt or fit latency tables, "
                              "or list a device's published anchors")
    p.add_argument("action", choices=["list", "show", "check", "adapt", "fit", "anchors"])
    p.add_argument("target", nargs="?", help="table name (show, adapt), file (check), "
                   "timings CSV 'arch,ms' (fit) or device (anchors)")
    p.add_argument("--anchors", help="anchors: CSV of published latencies (default "
                   "latency_predictors/estimate/anchors.csv)")
    p.add_argument("--rows", type=int_at_least(1), default=20, help="rows shown by 'show' "
                   "(default 20)")
    p.add_argument("--name", help="adapt: name of the adapted table; fit: of the fitted one "
                   "(default: --device)")
    p.add_argument("--out", help="adapt, fit: table path (default $HWNAS_TABLES/NAME.csv)")
    p.add_argument("--space", default="cifar", help="adapt: space(s) to refit, "
                   "comma-separated (default cifar; ~20 s per space); fit: the timed nets' "
                   "space")
    p.add_argument("--device", help="fit: the timed device's name")
    p.add_argument("--prior", default="all", help="fit: tables to start from, comma-separated "
                   "(default all: every table covering the space), besides the roofline; "
                   "cross-validation picks one")
    p.add_argument("--no-roofline", action="store_true", help="fit: no roofline prior")
    p.add_argument("--runtime", default="unknown", help="fit: what timed the nets, recorded "
                   "in the table (e.g. 'OpenVINO 2024.1 benchmark_app')")
    p.add_argument("--confidence", type=fraction(), default=DEFAULT_CONFIDENCE,
                   help="fit: confidence of the margin printed (default 0.95; 0: no margin)")
    p.add_argument("-n", type=int_at_least(CV_FOLDS), default=ADAPT_NETS,
                   help=f"adapt: networks measured per space (default {ADAPT_NETS})")
    p.add_argument("--quiet", action="store_true", help="adapt: no progress bar")
    p.set_defaults(func=_tables)

    p = subparsers.add_parser("predict", help="predicted latency of an ArchSpec, per layer")
    p.add_argument("arch", help="ArchSpec JSON file or search RUN_DIR")
    p.add_argument("--device", required=True, help="table name or file")
    p.add_argument("--no-adapt", action="store_true", help=NO_ADAPT_HELP)
    p.set_defaults(func=_predict)

    p = subparsers.add_parser("measure", help="real end-to-end latency of an ArchSpec")
    p.add_argument("arch", help="ArchSpec JSON file or search RUN_DIR")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="onnxruntime",
                   help="(default onnxruntime)")
    p.add_argument("--ep", default=None, help="execution provider, as for profile "
                   "(default: the backend's CPU)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="(default 1)")
    p.add_argument("--warmup", type=int_at_least(0), default=10, help="untimed runs (default "
                   "10; 0: none)")
    p.add_argument("--repeats", type=int_at_least(1), default=100, help="timed runs (default 100)")
    p.add_argument("--device", default=None, help="also show this table's prediction "
                   "(default: a measured table of this host covering the space in the "
                   f"precision measured, else the {DEFAULT_TABLE!r} table, or "
                   f"{DEFAULT_TABLES['int8']!r} for int8, adapted to this host)")
    p.add_argument("--precision", choices=TIMED_PRECISIONS, default=None,
                   help="fp32, or int8: the net quantized as the int8 tables time it (default: "
                   "the precision of --device, else fp32)")
    p.add_argument("--no-adapt", action="store_true", help=NO_ADAPT_HELP)
    p.set_defaults(func=_measure)

    p = subparsers.add_parser("validate", help="predictor error on random architectures")
    p.add_argument("--device", required=True, help="table name or file (measured)")
    p.add_argument("--space", default="cifar", help="(default cifar)")
    p.add_argument("-n", type=int_at_least(1), default=50, help="networks measured (default 50)")
    p.add_argument("--seed", type=int_at_least(0), default=1000, help="seed of the sampled "
                   "networks, >= 0 (default 1000)")
    p.add_argument("--sampler", choices=SAMPLERS, default="spread",
                   help="spread: a random skip share, like searched networks (default); "
                   "uniform: every layer uniform over the candidates")
    p.add_argument("--out", default=None, help="folder for validation.csv and .png")
    p.add_argument("--force", action="store_true", help="replace validation.csv and .png in "
                   "--out if they exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_validate)
