"""Image classification data sets as uint8 tensors: the readers behind ``--dataset``.

Sources (``load_dataset``):

- ``fashion-mnist`` (the built-in default): the IDX files of Debian's ``dataset-fashion-mnist``
  package in ``/usr/share/datasets/fashion-mnist``;
- ``cifar10``: the directory named by ``$HWNAS_CIFAR10``;
- a PATH: the CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``), an image tree
  (``train/`` and ``test/`` of class folders, or class folders only: a generic ImageFolder whose
  test split is carved off), or a ``.tar.gz`` of such a tree, read without extracting;
- ``synthetic``: class-dependent random images for tests.

Decoded images are kept as uint8 (N, C, h, w) and cached as ``.npz``, keyed by a SHA-256 of the
source's contents (a changed file is never served stale; a corrupt cache file is rebuilt).
Hostile sources are bounded: no image file over :data:`MAX_IMAGE_BYTES`, no image over
:data:`MAX_IMAGE_PIXELS`, and only dict batches of arrays are read from CIFAR pickles
(:class:`_ArrayUnpickler`). How a run batches and splits them is :mod:`nas.run.batches`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_write_with

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle-boot")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")
DEFAULT_CACHE = Path(os.environ.get("HWNAS_CACHE", Path.home() / ".cache" / "hwnas"))
CARVED_TEST_FRACTION = 0.1  # test split of a class-folders-only ImageFolder
MAX_IMAGE_BYTES = 32 * 2**20  # one encoded image file (or archive member)
MAX_IMAGE_PIXELS = 4096 * 4096  # one decoded image
CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y", "classes")


@dataclass(frozen=True)
class ImageData:
    """Decoded images as uint8 (N, C, h, w) tensors with int64 labels."""

    name: str
    classes: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> ImageData:
    """Fashion-MNIST from its four IDX files (60,000 train / 10,000 test, 28×28 grey)."""
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    if not all((root / name).is_file() for name in files):
        raise HwnasError(f"Fashion-MNIST not found in {root}; install it with "
                         "`apt-get install -y dataset-fashion-mnist` or pass --dataset PATH")
    try:
        arrays = [torch.from_numpy(_read_idx(root / name).copy()) for name in files]
    except (OSError, ValueError, IndexError) as err:
        raise HwnasError(f"unreadable Fashion-MNIST file in {root}: {err}") from None
    train_x, train_y, test_x, test_y = arrays
    return ImageData("fashion-mnist", FASHION_MNIST_CLASSES, train_x[:, None],
                     train_y.long(), test_x[:, None], test_y.long())


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR-10 python batches hold: dicts, lists, bytes, numbers and
    numpy arrays. Any other global (``os.system``, a class with a hostile ``__reduce__``) is
    refused instead of being called: a data file a user passes is not trusted code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}  # how protocol 2 stores bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if hasattr(np, "_core"):  # numpy 2 moved numpy.core to numpy._core
            module = module.replace("numpy.core.", "numpy._core.")
        return getattr(importlib.import_module(module), name)


def _cifar_batches(root: Path) -> dict[str, np.ndarray]:
    """The CIFAR-10 python batches, read with :class:`_ArrayUnpickler`."""
    def read(name: str) -> dict:
        with open(root / name, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        if not isinstance(batch, dict):
            raise HwnasError(f"{root / name}: not a CIFAR-10 batch (a pickled "
                             f"{type(batch).__name__}, expected a dict)")
        return batch

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    test = read("test_batch")
    meta = read("batches.meta") if (root / "batches.meta").is_file() else {}
    names = meta.get(b"label_names", [str(i).encode() for i in range(10)])
    return {"train_x": np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32),
            "train_y": np.concatenate([b[b"labels"] for b in train]).astype(np.int64),
            "test_x": np.asarray(test[b"data"]).reshape(-1, 3, 32, 32),
            "test_y": np.asarray(test[b"labels"], np.int64),
            "classes": np.asarray([n.decode() for n in names])}


def _tree_files(path: Path) -> dict[str, bytes]:
    """name -> encoded bytes of every image in a directory or (read in one pass) a .tar.gz."""
    files = {}
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                files[str(p.relative_to(path))] = _bounded(p.stat().st_size, p.open("rb"), p)
        return files
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                files[member.name] = _bounded(member.size, tar.extractfile(member),
                                              f"{path}:{member.name}")
    return files


def _bounded(size: int, file: io.BufferedIOBase, where: object) -> bytes:
    """The bytes of one image file, refused past :data:`MAX_IMAGE_BYTES` (whatever its header
    claims, at most that many bytes plus one are read)."""
    with file:
        data = file.read(MAX_IMAGE_BYTES + 1) if size <= MAX_IMAGE_BYTES else b""
    if size > MAX_IMAGE_BYTES or len(data) > MAX_IMAGE_BYTES:
        raise HwnasError(f"{where}: image file over {MAX_IMAGE_BYTES // 2**20} MiB; hwnas reads "
                         "small images (resize them first)")
    return data


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise HwnasError(f"{name}: image of {image.width}x{image.height} pixels, over "
                                 f"the {MAX_IMAGE_PIXELS:,} hwnas reads (resize it first)")
            array = np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as err:  # not an OSError
        raise HwnasError(f"{name}: refused as a decompression bomb ({err})") from None
    return array.transpose(2, 0, 1)


def _image_tree(path: Path) -> dict[str, np.ndarray]:
    """``train/`` and ``test/`` of class folders, or class folders only (test carved off)."""
    files = _tree_files(path)
    if not files:
        raise HwnasError(f"{path}: no images found; expected train/ and test/ folders of class "
                         f"folders, class folders, or CIFAR-10 python batches")
    names = sorted(files)
    parts = [Path(name).parts for name in names]
    loose = next((name for name, p in zip(names, parts, strict=True) if len(p) < 2), None)
    if loose is not None:
        raise HwnasError(f"{path}: image {loose} is not in a class folder; put every image in "
                         "a folder named after its class")
    classes = sorted({p[-2] for p in parts})
    images = [_decode(files.pop(name), f"{path}:{name}") for name in names]
    if len({im.shape for im in images}) != 1:
        raise HwnasError(f"{path}: images have different sizes; resize them to one size first")
    x = np.stack(images)
    y = np.asarray([classes.index(p[-2]) for p in parts], np.int64)
    split = np.asarray([next((d for d in p[:-2] if d in ("train", "test")), "all")
                        for p in parts])
    if not (split == "test").any():  # generic ImageFolder: carve a seeded test split
        order = np.random.default_rng(0).permutation(len(x))
        split = np.where(np.isin(np.arange(len(x)), order[:int(len(x) * CARVED_TEST_FRACTION)]),
                         "test", "train")
    return {"train_x": x[split != "test"], "train_y": y[split != "test"],
            "test_x": x[split == "test"], "test_y": y[split == "test"],
            "classes": np.asarray(classes)}


def content_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's file names and bytes (sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else "").encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(2**20):
                digest.update(chunk)
    return digest.hexdigest()


def _cache_file(path: Path, cache_dir: Path) -> Path:
    return cache_dir / f"{path.name.split('.')[0]}-{content_digest(path)[:16]}.npz"


def _read_cache(cache: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when there is no cache file or it is corrupt (a corrupt one
    is deleted, to be rebuilt)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if set(arrays) == set(CACHE_KEYS):
            return arrays
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        pass
    cache.unlink(missing_ok=True)
    return None


def load_path(path: Path, cache_dir: Path = DEFAULT_CACHE) -> ImageData:
    """Images from CIFAR python batches, an image tree or a .tar.gz tree (cached as .npz)."""
    if not path.exists():
        raise HwnasError(f"{path}: no such data directory or archive")
    try:
        cache = _cache_file(path, cache_dir)
        arrays = _read_cache(cache)
        if arrays is None:
            batches = path.is_dir() and (path / "data_batch_1").is_file()
            arrays = _cifar_batches(path) if batches else _image_tree(path)
            atomic_write_with(cache, lambda tmp: np.savez(open(tmp, "wb"), **arrays))
    except HwnasError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, tarfile.TarError,
            pickle.UnpicklingError) as err:
        raise HwnasError(f"{path}: unreadable data ({type(err).__name__}: {err})") from None
    arrays = _checked(arrays, path)
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
         if k != "classes"}
    return ImageData(path.name, tuple(str(c) for c in arrays["classes"]), t["train_x"],
                     t["train_y"].long(), t["test_x"], t["test_y"].long())


def _checked(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """``arrays`` with 8-bit images, or one error naming what is wrong: images that are not
    finite integers in 0..255 (a NaN, inf or fraction), labels outside the classes, or image and
    label counts that differ. Integer or integral float images are converted to uint8."""
    checked = dict(arrays)
    classes = len(arrays["classes"])
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != np.uint8:
            values = np.asarray(x, dtype=np.float64)
            problem = ("NaN or infinite values" if not np.isfinite(values).all()
                       else "values outside 0..255" if values.size and (
                           values.min() < 0 or values.max() > 255)
                       else "fractional values" if (values != np.round(values)).any() else None)
            if problem:
                raise HwnasError(f"{path}: {split} images ({x.dtype}) hold {problem}; hwnas "
                                 "reads 8-bit images (integers 0..255)")
            checked[f"{split}_x"] = values.astype(np.uint8)
        if len(x) != len(y):
            raise HwnasError(f"{path}: {len(x)} {split} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise HwnasError(f"{path}: {split} labels run from {y.min()} to {y.max()}, outside "
                             f"the {classes} classes")
    return checked


def synthetic(shape: tuple[int, int, int] = (3, 32, 32), classes: int = 10, train: int = 512,
              test: int = 128, seed: int = 0) -> ImageData:
    """Learnable random images: a fixed random pattern per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(classes, *shape, generator=g) * 160

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(classes, (n,), generator=g)
        x = patterns[y] + torch.rand(n, *shape, generator=g) * 96
        return x.clamp(0, 255).to(torch.uint8), y

    (train_x, train_y), (test_x, test_y) = draw(train), draw(test)
    return ImageData("synthetic", tuple(str(c) for c in range(classes)), train_x, train_y,
                     test_x, test_y)


def load_dataset(name: str, cache_dir: Path = DEFAULT_CACHE, limit: int | None = None,
                 shape: tuple[int, int, int] = (3, 32, 32), classes: int = 10) -> ImageData:
    """``fashion-mnist``, ``cifar10``, ``synthetic`` or a PATH; ``limit`` caps both splits."""
    if name == "fashion-mnist":
        data = load_fashion_mnist()
    elif name == "synthetic":
        data = synthetic(shape, classes)
    elif name == "cifar10":
        if "HWNAS_CIFAR10" not in os.environ:
            raise HwnasError("--dataset cifar10 needs $HWNAS_CIFAR10 set to its location; or "
                             "pass --dataset PATH (image tree, .tar.gz of one, python batches)")
        data = load_path(Path(os.environ["HWNAS_CIFAR10"]), cache_dir)
    else:
        data = load_path(Path(name), cache_dir)
    if limit is not None:  # a seeded random subset: image trees are sorted by class
        train = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))
        test = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(1))
        data = ImageData(data.name, data.classes, data.train_x[train[:limit]],
                         data.train_y[train[:limit]], data.test_x[test[:limit]],
                         data.test_y[test[:limit]])
    return data
