"""A quantized export that says what it cost (``hwnas export RUN --format onnx --quantize int8``).

The trained net (a search run's ``model.pt``, or a ``MODEL.pt`` of ``hwnas train``) is exported
to ONNX (checked against PyTorch as every ONNX export is) and quantized by the recipe the
``cpu-int8`` table times (:func:`latency_predictors.measure.quantize.quantize_onnx`),
calibrated on ``calibration`` training images of the data it was trained on (normalised as in
training). It is then measured as a user would: fp32 and int8 top-1 accuracy (both ONNX
Runtime, batch 1) on the test split the net's recorded accuracy comes from, the share of test
images on which both pick the same class, and the int8 file's latency here (ONNX Runtime, CPU,
1 thread, batch 1) next to the fp32 export's and the int8 table's prediction. Where
post-training quantization loses more than ``max_drop`` points, the result says so and names
quantization-aware fine-tuning (``qat_epochs``: :mod:`nas.deploy.fake_quant`), measured the
same way. The file is written
last, atomically: a failure (a run without a trained net, a failed calibration, an op the
quantizer cannot take) leaves nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_path
from latency_predictors import load_table, predict_latency
from latency_predictors.measure.adapt import host_true_table
from latency_predictors.measure.backends import export_onnx, make_backend, summarize
from latency_predictors.measure.quantize import cpu_session, describe_recipe, quantize_onnx
from latency_predictors.metadata import precision_of
from nas.core.config import SearchConfig
from nas.deploy.export import TOLERANCE
from nas.deploy.fake_quant import fake_quantized
from nas.run.batches import Batches, channel_stats, prepare_data
from nas.run.readers import load_dataset
from nas.run.train import Recipe, train_child
from nas.run.trained import MODEL_FILE, TrainedNet, load_finetuned, load_trained
from search_spaces import ArchSpec, get_space

CALIBRATION_IMAGES = 32  # training images the int8 ranges are calibrated on (default)
MAX_DROP = 1.0  # points of test accuracy post-training int8 may lose before the export says so
QAT_LR_FACTOR = 0.1  # quantization-aware fine-tuning starts at this share of the net's lr
INT8_TABLE = "cpu-int8"  # the table whose prediction the export shows (default)
TIMING_PASSES = 3  # round-robin passes of fp32 and int8 timing; each keeps its fastest


@dataclass(frozen=True)
class NetData:
    """What a trained net was trained and tested on: calibration images come from ``train``,
    accuracies from ``test`` (normalised as in its training)."""

    train: Batches
    test: Batches
    recipe: Recipe  # how it was trained: quantization-aware fine-tuning follows it
    what: str  # e.g. "3,000 fashion-mnist test images"


def net_data(source: Path, trained: TrainedNet) -> NetData:
    """The data ``trained`` came from: a search run's own splits (``summary.json``), or the data
    set and limit ``hwnas train`` recorded in a ``MODEL.pt``."""
    how = trained.trained
    if source.is_dir():
        fields = json.loads((source / "summary.json").read_text())["config"]
        known = {f.name for f in dataclasses.fields(SearchConfig)}
        config = SearchConfig(**{**{k: v for k, v in fields.items() if k in known},
                                 "devices": tuple(fields["devices"]),
                                 "budgets_ms": tuple(fields["budgets_ms"]), "progress": False})
        splits = prepare_data(config, torch.device("cpu"))
        train, test = splits.weight, splits.test
        if config.retrain_images is not None:  # the fine-tuning's images, as the search used
            space = get_space(config.space)
            data = load_dataset(config.dataset, limit=config.retrain_images, shape=space.input,
                                classes=space.num_classes)
            train = Batches(data.train_x, data.train_y, space.input, torch.device("cpu"),
                            splits.weight.mean.flatten(), splits.weight.std.flatten())
        recipe = Recipe(max(1, config.retrain_epochs), config.batch_size, config.weight_lr,
                        config.weight_decay, config.seed)
        dataset = config.dataset
    else:
        if "dataset" not in how:
            raise HwnasError(f"{source} records no training data set, so it cannot be "
                             "calibrated on its training images; export it without --quantize")
        space = get_space(trained.spec.space)
        data = load_dataset(how["dataset"], limit=how.get("data_limit"), shape=space.input,
                            classes=space.num_classes)
        mean, std = channel_stats(data.train_x, space.input)
        train = Batches(data.train_x, data.train_y, space.input, torch.device("cpu"), mean, std)
        test = Batches(data.test_x, data.test_y, space.input, torch.device("cpu"), mean, std)
        recipe = Recipe(1, 64, 0.05, 4e-5, int(how.get("seed", 0)))
        dataset = how["dataset"]
    return NetData(train, test, recipe, f"{len(test):,} {dataset} test images")


def load_net(source: str | Path) -> TrainedNet:
    """The trained net of a search run directory (its ``model.pt``) or a ``MODEL.pt``; one
    clear error for anything else (an architecture file has no trained weights)."""
    source = Path(source)
    if source.is_dir():
        return load_finetuned(source)
    if source.suffix == ".pt" and source.is_file():
        spec, model = load_trained(source)
        record = torch.load(source, map_location="cpu", weights_only=True)
        return TrainedNet(source, spec, model, record.get("test_accuracy"),
                          record.get("trained") or {})
    raise HwnasError(f"--quantize int8 needs a trained net: a search RUN_DIR with {MODEL_FILE} "
                     f"or a MODEL.pt of hwnas train, got {source} (an architecture file has "
                     "random weights, which calibrate to nothing)")


def calibration_inputs(train: Batches, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` training images (a seeded random draw), normalised, each of batch 1."""
    if n < 1:
        raise HwnasError(f"int8 calibration needs at least 1 training image, got {n}")
    if n > len(train):
        raise HwnasError(f"int8 calibration asks for {n} training images; the net's training "
                         f"data holds {len(train)}")
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    images, _ = train.batch(index.sort().values, augment=False)
    return [x[None].numpy().astype(np.float32) for x in images]


@dataclass(frozen=True)
class Accuracy:
    """fp32 and int8 top-1 on the same test images, and how often they pick the same class."""

    fp32: float
    int8: float
    agreement: float

    @property
    def drop_points(self) -> float:
        return 100 * (self.fp32 - self.int8)


def compare(fp32: bytes, int8: bytes, test: Batches, input_name: str = "input",
            reference: float | None = None) -> Accuracy:
    """Top-1 of the fp32 ONNX ``fp32`` and of the int8 ONNX ``int8`` (ONNX Runtime, batch 1 as
    exported) on ``test``, and their top-1 agreement; ``reference`` replaces the fp32 accuracy
    the drop is taken from (the net before quantization-aware fine-tuning). The fp32 export
    agrees with PyTorch within :data:`nas.deploy.export.TOLERANCE` of its largest output, and
    runs the 3,000 test images of the main job in about 3 s where PyTorch on one thread takes
    20 s."""
    sessions = cpu_session(fp32), cpu_session(int8)
    correct32 = correct8 = same = total = 0
    for images, labels in test.in_order():
        for x, label in zip(images.numpy(), labels.tolist(), strict=True):
            top32, top8 = (int(s.run(None, {input_name: x[None]})[0].argmax()) for s in sessions)
            correct32 += top32 == label
            correct8 += top8 == label
            same += top8 == top32
            total += 1
    fp32_accuracy = correct32 / max(1, total)
    return Accuracy(fp32_accuracy if reference is None else reference, correct8 / max(1, total),
                    same / max(1, total))


def time_models(models: dict[str, Callable[[], object]], passes: int = TIMING_PASSES
                ) -> dict[str, float]:
    """Batch-1 latency (ms) of each prepared run, timed round robin (``passes`` passes of 100
    runs, one thread's CPU time) and each keeping its fastest pass, as whole nets are
    measured against tables (:mod:`latency_predictors.measure.networks`)."""
    timer = make_backend("onnxruntime", "cpu", 1, 10, 100)
    fastest = {name: float("inf") for name in models}
    for _ in range(passes):
        for name, run in models.items():
            fastest[name] = min(fastest[name], float(summarize(timer.time_run(run))["median_ms"]))
    return fastest


@dataclass(frozen=True)
class QuantizedExport:
    """What ``hwnas export --quantize int8`` did and measured."""

    path: Path
    spec: ArchSpec
    calibration_images: int
    seconds: float  # quantization (pre-processing, calibration, QDQ)
    ptq: Accuracy  # post-training quantization of the trained net
    qat: Accuracy | None  # after quantization-aware fine-tuning (the file written), if asked
    qat_epochs: int
    test_what: str
    int8_ms: float  # the file written, measured here
    fp32_ms: float  # the fp32 export of the same net, measured here
    predicted_ms: float | None  # the int8 table's prediction here
    table: str | None
    table_note: str | None  # why there is no prediction, or how the table was made true here
    max_drop: float

    def lines(self) -> list[str]:
        """What the command prints."""
        out = [f"quantized int8 ({describe_recipe()}; calibrated on {self.calibration_images} "
               f"training images) in {self.seconds:.1f} s"]
        out.append(_accuracy_line("post-training int8", self.ptq, self.test_what))
        if self.qat is None:
            if self.ptq.drop_points > self.max_drop:
                out.append(f"post-training int8 loses {self.ptq.drop_points:.2f} points, more "
                           f"than --max-drop {self.max_drop:g}: fine-tune with fake "
                           "quantization first with --qat-epochs 1 (measured the same way)")
            else:
                out.append(f"post-training int8 keeps test accuracy within {self.max_drop:g} "
                           f"point{'s' if self.max_drop != 1 else ''} of fp32")
        else:
            out.append(_accuracy_line(f"after {self.qat_epochs} epoch"
                                      f"{'s' if self.qat_epochs != 1 else ''} of "
                                      "quantization-aware fine-tuning, int8", self.qat,
                                      self.test_what) + " (the file written)")
            verdict = "within" if self.qat.drop_points <= self.max_drop else "still more than"
            out.append(f"quantization-aware fine-tuning: {verdict} {self.max_drop:g} points of "
                       "the fp32 net before it")
        speed = f"{self.fp32_ms / self.int8_ms:.2f}× the fp32 export's {self.fp32_ms:.3f} ms"
        line = (f"latency here (onnxruntime CPU, 1 thread, batch 1): int8 {self.int8_ms:.3f} ms "
                f"measured ({speed})")
        if self.predicted_ms is not None:
            error = (self.predicted_ms / self.int8_ms - 1) * 100
            line += f"; table {self.table!r} predicts {self.predicted_ms:.3f} ms ({error:+.1f} %)"
        out.append(line)
        if self.table_note:
            out.append(self.table_note)
        out.append(f"wrote {self.path} (int8 ONNX, input 'input' of shape 1x"
                   f"{'x'.join(map(str, self.spec.input))}, normalised as in training)")
        return out


def _accuracy_line(what: str, accuracy: Accuracy, test_what: str) -> str:
    return (f"{what}: test accuracy {accuracy.int8:.4f} against fp32 {accuracy.fp32:.4f} "
            f"({-accuracy.drop_points:+.2f} points) on {test_what}; top-1 agreement with fp32 "
            f"{100 * accuracy.agreement:.1f} %")


def fp32_onnx(model: nn.Module, spec: ArchSpec) -> bytes:
    """``model`` exported as ``hwnas export --format onnx`` writes it (input ``input``, output
    ``logits``), checked against PyTorch on a random input as that export is."""
    fp32 = export_onnx(model, tuple(spec.input), "input", "logits")
    x = torch.randn(1, *spec.input, generator=torch.Generator().manual_seed(0))
    got = cpu_session(fp32).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model.eval()(x).numpy()
    if not float(np.abs(got - want).max()) <= TOLERANCE * max(1.0, float(np.abs(want).max())):
        raise HwnasError(f"the fp32 ONNX export of {spec.to_string()} disagrees with PyTorch; "
                         "nothing written")
    return fp32


def _prediction(spec: ArchSpec, table_name: str) -> tuple[float | None, str | None]:
    """The int8 table's prediction of ``spec`` here and a note, or None and why not. Only an
    adaptation cached before is used: measuring one would take longer than the export."""
    try:
        table = load_table(table_name)
        if precision_of(table.metadata) != "int8":
            return None, (f"note: table {table_name!r} is {precision_of(table.metadata)}, not "
                          "int8: no prediction shown")
        hosted = host_true_table(table, [spec.space], measure=False, progress=False)
        return predict_latency(spec, hosted.table).total_ms, hosted.note
    except HwnasError as err:
        return None, f"note: no int8 prediction: {err}"


def export_quantized(source: str | Path, out: str | Path, calibration: int = CALIBRATION_IMAGES,
                     max_drop: float = MAX_DROP, qat_epochs: int = 0,
                     table: str = INT8_TABLE, progress: bool = True) -> QuantizedExport:
    """Quantize the trained net of ``source`` to int8 ONNX at ``out`` and measure what it cost
    (module docstring); ``qat_epochs`` > 0 fine-tunes it with fake quantization first and
    writes that net. Raises :class:`HwnasError` in one line, with nothing written, for a
    source without a trained net, a failed calibration or quantization."""
    source, out = Path(source), Path(out)
    net = load_net(source)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the runtime is timed on one thread; so is everything around it
    try:
        data = net_data(source, net)
        inputs = calibration_inputs(data.train, calibration)
        fp32 = fp32_onnx(net.model, net.spec)
        start = time.perf_counter()
        int8 = quantize_onnx(fp32, inputs, "input")
        seconds = time.perf_counter() - start
        ptq = compare(fp32, int8, data.test)
        qat = None
        if qat_epochs:
            tuned = fp32_onnx(_fine_tune_quantized(net.model, data, qat_epochs, progress),
                              net.spec)
            int8 = quantize_onnx(tuned, inputs, "input")
            qat = compare(tuned, int8, data.test, reference=ptq.fp32)
        feed = {"input": inputs[0]}
        sessions = {"int8": cpu_session(int8), "fp32": cpu_session(fp32)}
        ms = time_models({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()})
    finally:
        torch.set_num_threads(previous)
    predicted, note = _prediction(net.spec, table)
    with atomic_path(out) as tmp:
        tmp.write_bytes(int8)
    return QuantizedExport(out, net.spec, calibration, seconds, ptq, qat, qat_epochs,
                           data.what, ms["int8"], ms["fp32"], predicted,
                           table if predicted is not None else None, note, max_drop)


def _fine_tune_quantized(model: nn.Module, data: NetData, epochs: int,
                         progress: bool) -> nn.Module:
    """A copy of ``model`` fine-tuned ``epochs`` epochs with fake int8 quantization
    (:func:`nas.deploy.fake_quant.fake_quantized`) on its training data, by its own recipe at
    :data:`QAT_LR_FACTOR` of its learning rate."""
    import copy

    tuned = copy.deepcopy(model).train()
    recipe = dataclasses.replace(data.recipe, epochs=epochs, lr=data.recipe.lr * QAT_LR_FACTOR)
    with fake_quantized(tuned):
        train_child(tuned, data.train, recipe, progress, desc="quantization-aware fine-tune")
    return tuned.eval()
