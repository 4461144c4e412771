"""Nothing the user made is lost or exposed: overwrite guards, durable atomic writes, atomic
tables, sweep studies in the sweep's folder, hostile data sources, table names, secrets."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from hwnas_common import HwnasError
from hwnas_common.fileio import atomic_write_text, remove_stale_temporaries
from latency_predictors import load_table, save_table
from latency_predictors import table as table_module
from nas.run import distributed, readers
from nas.tune.storage import redact_url, sqlite_url
from nas.tune.sweep import create_study
from tests.helpers import cli_fails as _fails
from tests.helpers import search_argv, tiny_table


# ---- durable atomic writes -------------------------------------------------------------------
def test_atomic_write_keeps_the_replaced_files_mode(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("old")
    secret.chmod(0o600)
    atomic_write_text(secret, "new")
    assert secret.read_text() == "new" and secret.stat().st_mode & 0o777 == 0o600


def test_resume_cleanup_deletes_only_what_hwnas_named(tmp_path: Path) -> None:
    theirs = [tmp_path / ".session.tmp", tmp_path / ".x.tmp", tmp_path / "notes.tmp"]
    for path in theirs:
        path.write_text("another program's")
    ours = tmp_path / ".checkpoint.pt.hwnas-k3j2.tmp"
    ours.write_text("half a checkpoint")
    assert remove_stale_temporaries(tmp_path) == [ours]
    assert all(path.read_text() == "another program's" for path in theirs)


# ---- overwrite guards ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("guards")
    table = str(tiny_table(root / "tables"))
    assert cli.main(search_argv(root / "run", table, "--budget", "4ms")) == 0
    return root / "run", table


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("argv", "match"), [
    (["export", "RUN", "--format", "pt", "--out", "RUN/checkpoint.pt", "--train-epochs", "0"],
     "checkpoint.pt of the search run"),
    (["export", "RUN", "--format", "onnx", "--out", "RUN/arch.json", "--train-epochs", "0"],
     "arch.json of the search run"),
    (["export", "RUN", "--format", "pt", "--out", "RUN/summary.json", "--train-epochs", "0",
      "--force"], "no other command writes it"),
    (["export", "ARCH", "--format", "onnx", "--out", "NOTES"], "pass --force"),
    (["train", "RUN", "--epochs", "1", "--dataset", "synthetic", "--out", "RUN/checkpoint.pt"],
     "checkpoint.pt of the search run"),
    (["train", "ARCH", "--epochs", "1", "--dataset", "synthetic", "--out", "NOTES"],
     "pass --force"),
    (["train", "ARCH", "--epochs", "1", "--dataset", "synthetic", "--out", "ARCH", "--force"],
     "the architecture being trained"),
    (["sweep", "RUN", "--device", "TABLE", "--budgets", "4ms", "--trials", "1", "--out", "RUN"],
     "holds a search run"),
    (["sweep", "RUN", "--device", "TABLE", "--budgets", "4ms", "--trials", "1", "--out",
      "USER"], "but no sweep"),
])
def test_a_command_never_replaces_a_run_file_or_a_users_file(
        finished_run: tuple[Path, str], tmp_path: Path, argv: list[str], match: str,
        capsys: pytest.CaptureFixture) -> None:
    run, table = finished_run
    arch, notes, user = tmp_path / "arch.json", tmp_path / "notes.txt", tmp_path / "mine"
    arch.write_bytes((run / "arch.json").read_bytes())
    notes.write_text("my notes\n")
    user.mkdir()
    (user / "trials.csv").write_text("my trials\n")
    names = {"RUN": str(run), "ARCH": str(arch), "NOTES": str(notes), "USER": str(user),
             "TABLE": table}
    argv = [next((a.replace(k, v, 1) for k, v in names.items() if a.startswith(k)), a)
            for a in argv]
    before, mine = _digests(run), _digests(tmp_path)
    _fails(argv, capsys, match)
    assert _digests(run) == before and _digests(tmp_path) == mine


def test_calibrate_budget_refuses_an_out_that_holds_a_run(
        finished_run: tuple[Path, str], capsys: pytest.CaptureFixture) -> None:
    run, table = finished_run
    before = _digests(run)
    for extra in ((), ("--resume",)):
        _fails(search_argv(run, table, "--budget", "4ms", "--calibrate-budget", "2", *extra),
               capsys, "--calibrate-budget would replace its files")
    assert _digests(run) == before


def test_force_replaces_a_users_file_but_not_the_input(
        finished_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, _ = finished_run
    out = tmp_path / "net.onnx"
    out.write_text("old export")
    assert cli.main(["export", str(run / "arch.json"), "--out", str(out), "--force"]) == 0
    assert out.read_bytes() != b"old export"
    capsys.readouterr()


# ---- atomic tables ---------------------------------------------------------------------------
def _kill_at(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Make the rename onto ``target`` die like a kill (the process ends there)."""
    replace = os.replace

    def dying(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        if Path(dst) == target:
            raise SystemExit("killed")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", dying)


@pytest.mark.parametrize("where", ["before-commit", "after-commit"])
def test_a_table_save_killed_anywhere_loads_whole(tmp_path: Path, where: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_table(tmp_path)
    old = load_table(path)
    new = table_module.LatencyTable(old.frame.assign(median_ms=old.frame["median_ms"] * 2),
                                    {**old.metadata, "notes": "twice as slow"}, old.name)
    with monkeypatch.context() as patch:
        _kill_at(patch, path.with_suffix(".json") if where == "before-commit" else path)
        with pytest.raises(SystemExit):
            save_table(new, path)
    loaded = load_table(path)
    want = old if where == "before-commit" else new
    assert loaded.metadata.get("notes") == want.metadata.get("notes")
    assert list(loaded.frame["median_ms"]) == list(want.frame.sort_values(
        list(table_module.KEY_COLUMNS))["median_ms"])
    save_table(new, path)  # a later save leaves no temporary behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.csv", "fake.json"]


def test_table_names_are_not_paths_and_lookup_says_what_it_loaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from latency_predictors.measure.profile import default_out

    for name in ("../x", "a/b", "..", ""):
        with pytest.raises(HwnasError, match="must be a name, not a path"):
            default_out(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cpu").mkdir()  # a folder named like a shipped table
    monkeypatch.setenv("HWNAS_TABLES", str(tmp_path / "mine"))
    assert load_table("cpu").device == "cpu"
    assert capsys.readouterr().err == ""  # the shipped table, silently
    user = tiny_table(tmp_path / "mine", "cpu")
    assert load_table("cpu").metadata["provenance"] == "estimated"
    assert capsys.readouterr().err == f"note: table 'cpu' is {user} (not the shipped one)\n"


# ---- sweeps: a study in the sweep's folder, settings recorded, secrets kept ---------------
def test_sweep_keeps_trials_in_its_folder_and_refuses_other_settings(
        finished_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, table = finished_run
    out = tmp_path / "sweep?#1"
    argv = ["sweep", str(run), "--device", table, "--budgets", "4ms", "--trials", "3", "--out",
            str(out)]
    assert cli.main(argv) == 0 and (out / "study.db").is_file()
    assert cli.main(argv) == 0  # runs on: the first run's trials are kept
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + 6
    capsys.readouterr()
    argv[argv.index("4ms")] = "3ms"
    _fails(argv, capsys, "repeat its settings")


def test_a_killed_sweep_keeps_its_finished_trials(
        finished_run: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    import optuna

    from nas.tune import sweep_run

    run, table = finished_run
    out = tmp_path / "sweep"
    make = sweep_run.supernet_evaluator

    def dies_on_the_fourth(*args: object) -> object:
        evaluate, calls = make(*args), []

        def counted(spec: object) -> float:
            calls.append(spec)
            if len(calls) == 4:
                raise SystemExit("killed")
            return evaluate(spec)

        return counted

    argv = ["sweep", str(run), "--device", table, "--budgets", "4ms", "--trials", "5", "--out",
            str(out)]
    with monkeypatch.context() as patch:
        patch.setattr(sweep_run, "supernet_evaluator", dies_on_the_fourth)
        with pytest.raises(SystemExit):
            cli.main(argv)
    study = optuna.load_study(study_name="sweep-fake", storage=sqlite_url(out / "study.db"))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and not (out / "trials.csv").exists()
    assert cli.main(argv) == 0  # the rerun keeps them and adds its own
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + 3 + 5
    capsys.readouterr()


def test_storage_passwords_are_never_printed(capsys: pytest.CaptureFixture) -> None:
    url = "postgresql://user:hunter2@127.0.0.1:9/db"
    assert redact_url(url) == "postgresql://user:***@127.0.0.1:9/db"
    with pytest.raises(HwnasError) as err:
        create_study([1.0], 0, url, "s")
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


def test_sqlite_paths_with_url_characters_are_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "a?b#c%20"
    folder.mkdir()
    create_study([1.0], 0, sqlite_url(folder / "study.db"), "s")
    assert (folder / "study.db").is_file() and not (tmp_path / "a").exists()


# ---- bad torchrun environment ----------------------------------------------------------------
@pytest.mark.parametrize(("rank", "world"), [("x", "2"), ("0", "two"), ("3", "2"), ("-1", "2")])
def test_bad_rank_or_world_size_is_one_line(rank: str, world: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", world)
    table = str(tiny_table(tmp_path))
    _fails(search_argv(tmp_path / "run", table, "--budget", "4ms"), capsys, "torchrun")
    assert not (tmp_path / "run").exists()
    with pytest.raises(HwnasError):
        distributed.environment_group()


# ---- hostile data sources --------------------------------------------------------------------
def _png(size: tuple[int, int] = (4, 4)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="png")
    return buffer.getvalue()


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def test_archive_members_and_images_are_bounded(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _archive(tmp_path / "big.tar.gz", {"train/cat/0.png": _png((64, 64)),
                                                 "train/dog/0.png": _png((64, 64))})
    monkeypatch.setattr(readers, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(HwnasError, match="image file over"):
        readers.load_path(archive, tmp_path / "cache")
    monkeypatch.setattr(readers, "MAX_IMAGE_BYTES", 2**20)
    monkeypatch.setattr(readers, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(HwnasError, match="64x64 pixels"):
        readers.load_path(archive, tmp_path / "cache")
    monkeypatch.setattr(readers, "MAX_IMAGE_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL's own bomb check (2x: an error)
    with pytest.raises(HwnasError, match="decompression bomb"):
        readers.load_path(archive, tmp_path / "cache")


def test_root_level_images_and_foreign_batches_are_one_error(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "loose.tar.gz", {"0.png": _png(), "cat/1.png": _png()})
    with pytest.raises(HwnasError, match="0.png is not in a class folder"):
        readers.load_path(archive, tmp_path / "cache")
    batches = tmp_path / "batches"
    batches.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (batches / name).write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(HwnasError, match="a pickled list, expected a dict"):
        readers.load_path(batches, tmp_path / "cache")


def test_the_data_cache_follows_content_and_heals(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for cls in ("a", "b"):
        (tree / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4, 3), 10 * i, np.uint8)).save(tree / cls / f"{i}.bmp")
    first = readers.load_path(tree, tmp_path / "cache")
    image = tree / "a" / "0.bmp"  # uncompressed: one pixel more keeps the size
    stat = image.stat()
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0, 0] = 99  # same size, same mtime, other content
    Image.fromarray(pixels).save(image)
    assert image.stat().st_size == stat.st_size
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = readers.load_path(tree, tmp_path / "cache")
    assert not np.array_equal(changed.train_x.numpy(), first.train_x.numpy()) or not \
        np.array_equal(changed.test_x.numpy(), first.test_x.numpy())
    for cache in (tmp_path / "cache").glob("*.npz"):
        cache.write_bytes(b"PK\x03\x04 not a zip")
    healed = readers.load_path(tree, tmp_path / "cache")
    assert np.array_equal(healed.train_x.numpy(), changed.train_x.numpy())


def test_validate_refuses_to_replace_a_validation_before_measuring(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "validation.csv").write_text("an earlier validation\n")
    _fails(["validate", "--device", "cpu", "--out", str(tmp_path)], capsys, "pass --force")
    assert (tmp_path / "validation.csv").read_text() == "an earlier validation\n"


def test_train_of_a_run_writes_trained_pt_not_the_runs_model_pt(
        finished_run: tuple[Path, str], capsys: pytest.CaptureFixture) -> None:
    run, _ = finished_run
    assert cli.main(["train", str(run), "--epochs", "1", "--dataset", "synthetic"]) == 0
    assert (run / "trained.pt").is_file() and not (run / "model.pt").exists()
    assert f"wrote {run / 'trained.pt'}" in capsys.readouterr().out
