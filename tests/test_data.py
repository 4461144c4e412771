"""Data readers (image trees, .tar.gz, CIFAR batches, Fashion-MNIST), cache, batches."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hwnas_common import HwnasError
from nas.run import readers
from nas.run.batches import Batches, adapt, random_crop_flip, split_holdout
from nas.run.readers import load_dataset, load_path


def _tree(root: Path, splits=("train", "test"), size=(6, 5)) -> None:
    rng = np.random.default_rng(0)
    for split in splits:
        for cls in ("b_dog", "a_cat"):
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_tree_directory_and_cache(tmp_path: Path) -> None:
    _tree(tmp_path / "tree")
    first = load_path(tmp_path / "tree", cache_dir=tmp_path / "cache")
    assert first.classes == ("a_cat", "b_dog")
    assert first.train_x.shape == (6, 3, 6, 5) and first.train_x.dtype == torch.uint8
    assert sorted(first.train_y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = load_path(tmp_path / "tree", cache_dir=tmp_path / "cache")
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_y, again.test_y)


def test_tar_gz_tree_and_flat_image_folder(tmp_path: Path) -> None:
    _tree(tmp_path / "src" / "cifar10_jpg")
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar10_jpg", arcname="cifar10_jpg")
    packed = load_path(archive, cache_dir=tmp_path / "cache")
    assert packed.train_x.shape[0] == 6 and packed.test_x.shape[0] == 6
    _tree(tmp_path / "flat", splits=("",))
    flat = load_path(tmp_path / "flat", cache_dir=tmp_path / "cache")
    assert len(flat.train_y) + len(flat.test_y) == 6 and len(flat.train_y) >= 5


def test_cifar_python_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8),
                 b"labels": [0, 1, 2, 3]}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    loaded = load_path(tmp_path, cache_dir=tmp_path / "cache")
    assert loaded.train_x.shape == (20, 3, 32, 32) and loaded.test_x.shape == (4, 3, 32, 32)


class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_batches_refuse_a_pickle_that_would_run_code(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8),
                 b"labels": [0, 1, 2, 3], b"x": _Hostile()}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(HwnasError, match="refusing to load"):
        load_path(tmp_path, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "pwned").exists()


def test_cifar_batches_of_old_pickle_protocols_load(tmp_path: Path) -> None:
    """The official files are protocol-2 pickles of numpy arrays (``_reconstruct``)."""
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=2))
    assert load_path(tmp_path, cache_dir=tmp_path / "cache").train_x.shape == (10, 3, 32, 32)


def test_unreadable_sources(tmp_path: Path) -> None:
    with pytest.raises(HwnasError, match="no such data"):
        load_path(tmp_path / "missing")
    (tmp_path / "bad" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "cat" / "0.jpg").write_bytes(b"junk")
    with pytest.raises(HwnasError, match="unreadable data"):
        load_path(tmp_path / "bad", cache_dir=tmp_path / "cache")


def test_missing_fashion_mnist_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(HwnasError, match="apt-get install -y dataset-fashion-mnist"):
        readers.load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not readers.FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist absent")
def test_fashion_mnist_is_adapted_to_the_space_input() -> None:
    fm = load_dataset("fashion-mnist", limit=100)
    assert fm.train_x.shape == (100, 1, 28, 28) and len(fm.classes) == 10
    x = adapt(fm.train_x[:8], (3, 32, 32))
    assert x.shape == (8, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 2]) and float(x[:, :, :2].abs().max()) == 0  # padded


def test_adapt_resizes_when_far_smaller() -> None:
    assert adapt(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), (3, 224, 224)).shape == (
        2, 3, 224, 224)


def test_holdout_split_is_disjoint_and_seeded() -> None:
    weight, arch = split_holdout(100, 0.1, seed=3)
    assert len(arch) == 10 and len(weight) == 90
    assert not set(weight.tolist()) & set(arch.tolist())
    assert torch.equal(arch, split_holdout(100, 0.1, seed=3)[1])
    with pytest.raises(HwnasError):
        split_holdout(5, 0.1, seed=0)


def test_batches_augment_on_tensors_deterministically() -> None:
    synth = load_dataset("synthetic", shape=(3, 8, 8))
    batches = Batches(synth.train_x, synth.train_y, (3, 8, 8), torch.device("cpu"),
                      torch.zeros(3), torch.ones(3))
    a = [x for x, _ in batches.epoch(64, torch.Generator().manual_seed(1), augment=True)]
    b = [x for x, _ in batches.epoch(64, torch.Generator().manual_seed(1), augment=True)]
    assert len(a) == len(synth.train_y) // 64
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    x = torch.arange(2 * 8 * 8, dtype=torch.float).view(2, 1, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape


def test_random_crop_flip_is_a_padded_shift_and_an_optional_flip() -> None:
    """Brute force: every augmented image is one of the (2·pad + 1)² shifts × 2 flips of its
    image, zero-padded by pad = H / 8."""
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float).view(2, 3, 16, 16) + 1
    generator = torch.Generator().manual_seed(0)
    pad = 2
    for _ in range(10):
        out = random_crop_flip(x, generator)
        for image, augmented in zip(x, out, strict=True):
            candidates = [F.pad(flipped, (pad,) * 4)[:, dy:dy + 16, dx:dx + 16]
                          for flipped in (image, image.flip(2))
                          for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
            assert any(torch.equal(augmented, c) for c in candidates)


def test_augmentation_pads_with_black_not_with_the_mean() -> None:
    """The crop's border is the images' own black (0 before normalising), so training images
    look like the unaugmented test images; padding after normalising would add mean-grey
    bands that no test image has."""
    black = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    batches = Batches(black, torch.zeros(64, dtype=torch.long), (3, 32, 32), torch.device("cpu"),
                      torch.full((3,), 0.5), torch.full((3,), 0.25))
    x, _ = next(batches.epoch(64, torch.Generator().manual_seed(0), augment=True))
    assert torch.all(x == -2.0)


@pytest.mark.parametrize(("value", "problem"), [(np.nan, "NaN or infinite"),
                                                (np.inf, "NaN or infinite"),
                                                (300.0, "values outside 0..255"),
                                                (0.5, "fractional values")])
def test_non_finite_or_out_of_range_images_are_one_error(tmp_path: Path, value: float,
                                                         problem: str) -> None:
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = np.full((2, 3072), 7.0)
        if name == "data_batch_3":
            pixels[1, 5] = value
        (tmp_path / name).write_bytes(pickle.dumps({b"data": pixels, b"labels": [0, 1]}))
    with pytest.raises(HwnasError, match=f"train images \\(float64\\) hold {problem}"):
        load_path(tmp_path, cache_dir=tmp_path / "cache")


def test_integral_float_images_become_uint8_and_labels_are_checked(tmp_path: Path) -> None:
    def write(labels: list[int]) -> None:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": np.full((2, 3072), 200.0), b"labels": labels}
            (tmp_path / name).write_bytes(pickle.dumps(batch))

    write([0, 9])
    loaded = load_path(tmp_path, cache_dir=tmp_path / "cache")
    assert loaded.train_x.dtype == torch.uint8 and int(loaded.train_x.max()) == 200
    write([0, 10])
    with pytest.raises(HwnasError, match="labels run from 0 to 10, outside the 10 classes"):
        load_path(tmp_path, cache_dir=tmp_path / "cache2")


def test_search_on_nan_images_is_one_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    import cli

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.full((2, 3072), np.nan), b"labels": [0, 1]}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    out = tmp_path / "run"
    code = cli.main(["search", "--quick", "--device", "cpu", "--budget", "1ms", "--dataset",
                     str(tmp_path), "--out", str(out), "--no-adapt"])  # no table measuring
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "NaN or infinite values" in err[0]
    assert not out.exists()
