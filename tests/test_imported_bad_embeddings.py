"""Imported front-ends that hand over something other than one row of numbers per clip: a HEAR
module's embeddings of the wrong shape or type, embedding files that are not real numbers, an
.npz listing a clip twice, a FIFO where a file belongs. Each stops the run with one line naming
the module or file and what is wrong (a ConfigError: the command line prints it without a
traceback), blocks nothing, and leaves no cache entry behind."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.audio import tone_folder
from helpers.runs import run_cli, run_here

from elm_audio.config import ConfigError, compose
from elm_audio.frontends.imported import Embeddings
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load
from elm_audio.stores.cache import FeatureCache

# A HEAR module that declares 4 values per clip and returns, as its load_model option says, the
# kind of wrong answer a module can give.
FAULTY_HEAR = '''
import numpy as np
import torch


class Model(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = 4
    timestamp_embedding_size = 4

    def __init__(self, fault):
        super().__init__()
        self.fault = fault


def load_model(model_file_path="", fault="column"):
    return Model(fault)


def get_scene_embeddings(audio, model):
    rows = torch.stack([audio.mean(1), audio.std(1), audio.abs().amax(1), audio.pow(2).mean(1)], dim=1)
    if model.fault == "column":
        return rows[:, :1]
    if model.fault == "extra_row":
        return torch.cat([rows, rows[:1]])
    if model.fault == "leading_axis":
        return rows[None]
    if model.fault == "wider":
        return torch.cat([rows, rows], dim=1)
    if model.fault == "integers":
        return (rows * 1000).long()
    if model.fault == "complex":
        return rows.to(torch.complex64)
    if model.fault == "objects":
        return np.array([{"scene": row} for row in rows], dtype=object)
    if model.fault == "not_finite":
        rows[0, 0] = float("nan")
        return rows
    raise ValueError(model.fault)
'''

# FAULTY_HEAR's faults and what the run says of each (after "get_scene_embeddings "), 6 clips.
HEAR_FAULTS = {
    "column": r"returned shape \(6, 1\) for 6 clip\(s\), not \(6, 4\): one row per clip of scene_embedding_size=4",
    "extra_row": r"returned shape \(7, 4\) for 6 clip\(s\), not \(6, 4\)",
    "leading_axis": r"returned shape \(1, 6, 4\) for 6 clip\(s\), not \(6, 4\)",
    "wider": r"returned shape \(6, 8\) for 6 clip\(s\), not \(6, 4\)",
    "integers": r"returned a tensor of torch\.int64; a HEAR module returns a float tensor",
    "complex": r"returned a tensor of torch\.complex64",
    "objects": r"returned an array of object \(ndarray\)",
    "not_finite": r"returned NaN or infinity for 1 of 6 clip\(s\); fix the module or its model file",
}

BLOCKING_LIMIT_S = 5.0


def clip_folder(root: Path) -> list[str]:
    """Two classes of three 1 s clips at 12 kHz; their clip ids."""
    tone_folder(root, 3, sr=12_000)
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.wav"))


def folder_run(tmp_path: Path, *overrides: str) -> list[str]:
    return ["dataset=folder", f"dataset.root={tmp_path / 'clips'}", "dataset.n_folds=3", "extract.progress=false",
            "extract.num_workers=0", "device=cpu", *overrides]  # fmt: skip


def cache_entries(cache: Path) -> list[Path]:
    """The cache's entries, complete (named by their key) or being written (.tmp-)."""
    return [p for p in cache.glob("*") if re.fullmatch(r"[0-9a-f]{20}", p.name) or p.name.startswith(".tmp-")]


def embeddings_plan(tmp_path: Path, path: Path):
    return make_plan(load(compose([*folder_run(tmp_path, "frontend=embeddings", f"frontend.path={path}"), f"cache.dir={tmp_path / 'cache'}"])))


@pytest.fixture()
def faulty_hear(tmp_path: Path) -> Iterator[str]:
    """FAULTY_HEAR as an installed module would be: a file on sys.path; its name."""
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "faulty_hear.py").write_text(FAULTY_HEAR)
    sys.path.insert(0, str(folder))
    try:
        yield "faulty_hear"
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("faulty_hear", None)


def raised_within(call: Callable[[], object], fifo: Path) -> BaseException | None:
    """What ``call`` raised, run in a thread; a call still blocked after BLOCKING_LIMIT_S (on
    ``fifo``) fails the test rather than hanging the suite: the FIFO is then opened for
    writing, which releases the reader waiting for a writer."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            raised.append(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(BLOCKING_LIMIT_S)
    if thread.is_alive():
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        thread.join(BLOCKING_LIMIT_S)
        pytest.fail(f"still blocked on the FIFO {fifo} after {BLOCKING_LIMIT_S} s")
    return raised[0] if raised else None


@pytest.mark.parametrize("fault", HEAR_FAULTS)
def test_a_hear_module_returning_other_than_a_float_row_per_clip_stops_the_run_naming_it(tmp_path, faulty_hear, fault):
    """A wrong shape was broadcast into the features or failed deep in numpy; a wrong type was
    cast or failed in torch. Now: one line naming the module, and no cache entry."""
    clip_folder(tmp_path / "clips")
    overrides = folder_run(tmp_path, "frontend=hear", f"frontend.module={faulty_hear}", f"frontend.options={{fault: {fault}}}")
    with pytest.raises(ConfigError, match=f"^frontend.module={faulty_hear}: get_scene_embeddings {HEAR_FAULTS[fault]}") as raised:
        run_here(tmp_path, *overrides)
    assert "\n" not in str(raised.value)
    cache = tmp_path / "cache"
    assert FeatureCache(cache).load(make_plan(load(compose([*overrides, f"cache.dir={cache}"]))).key) is None
    assert not cache_entries(cache)


def test_an_npz_listing_a_clip_id_twice_is_refused_rather_than_using_its_last_row(tmp_path):
    ids = clip_folder(tmp_path / "clips")
    listed = [*ids, ids[2]]
    np.savez(tmp_path / "vectors.npz", clip_ids=np.array(listed), embeddings=np.arange(len(listed) * 3, dtype=np.float32).reshape(-1, 3))
    repeated = f"vectors.npz: 1 clip id\\(s\\) listed more than once, e.g. {ids[2]} \\(2 rows\\); keep one row per clip id"
    with pytest.raises(ConfigError, match=repeated):
        embeddings_plan(tmp_path, tmp_path / "vectors.npz")


def save_npz(path: Path, ids: list[str], embeddings: np.ndarray) -> Path:
    np.savez(path, clip_ids=np.array(ids), embeddings=embeddings)
    return path


def folder_of(root: Path, ids: list[str], odd: object) -> Path:
    """A folder of float vectors, the first clip's file holding ``odd`` (pickled where it is no array)."""
    for cid in ids:
        (root / cid).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / f"{cid}.npy", np.ones(3, np.float32))
    np.save(root / f"{ids[0]}.npy", odd, allow_pickle=True)
    return root


def npy_given_for_npz(tmp_path: Path, ids: list[str]) -> Path:
    np.save(tmp_path / "v.npy", np.ones((len(ids), 3)))
    return tmp_path / "v.npy"


def npz_cut_short(tmp_path: Path, ids: list[str]) -> Path:
    whole = save_npz(tmp_path / "whole.npz", ids, np.ones((len(ids), 3))).read_bytes()
    (tmp_path / "v.npz").write_bytes(whole[:200])
    return tmp_path / "v.npz"


# What a user may give as frontend.path (made from the test's folder and the clip ids) and what
# the run says of it.
BAD_FILES: dict[str, tuple[Callable[[Path, list[str]], Path], str]] = {
    "pickled-npy": (lambda d, ids: folder_of(d / "v", ids, {"scene": np.ones(3)}),
                    r"frontend.path: .*/high_0.npy cannot be read as NumPy numbers \(Object arrays"),
    "complex-npy": (lambda d, ids: folder_of(d / "v", ids, np.ones(3, complex)),
                    r"frontend.path: .*/high_0.npy holds complex128 values, not real numbers"),
    "text-npz": (lambda d, ids: save_npz(d / "v.npz", ids, np.full((len(ids), 3), "x")),
                 r"frontend.path=.*/v.npz: embeddings holds <U1 values, not real numbers"),
    "complex-npz": (lambda d, ids: save_npz(d / "v.npz", ids, np.ones((len(ids), 3), complex)),
                    r"frontend.path=.*/v.npz: embeddings holds complex128 values"),
    "empty-npz": (lambda d, ids: save_npz(d / "v.npz", [], np.ones((0, 3))),
                  r"frontend.path=.*/v.npz: embeddings are \(0, 3\) for 0 clip ids"),
    "npy-for-npz": (npy_given_for_npz, r"frontend.path=.*/v.npy: an .npy file \(one array\); give an .npz"),
    "cut-npz": (npz_cut_short, r"frontend.path: .*/v.npz cannot be read as NumPy numbers"),
}  # fmt: skip


@pytest.mark.parametrize("bad", BAD_FILES)
def test_embedding_files_that_do_not_hold_real_numbers_are_named(tmp_path, bad):
    ids = clip_folder(tmp_path / "clips")
    make, message = BAD_FILES[bad]
    with pytest.raises(ConfigError, match=message) as raised:
        embeddings_plan(tmp_path, make(tmp_path, ids))
    assert "\n" not in str(raised.value)


def test_a_fifo_given_as_the_embeddings_file_is_refused_at_once(tmp_path):
    clip_folder(tmp_path / "clips")
    fifo = tmp_path / "vectors.npz"
    os.mkfifo(fifo)
    raised = raised_within(lambda: embeddings_plan(tmp_path, fifo), fifo)
    assert isinstance(raised, ConfigError)
    assert str(raised) == f"frontend.path: {fifo} is a FIFO (named pipe), not a regular file; give a regular file"


def test_a_fifo_among_the_embeddings_folders_files_is_refused_at_once(tmp_path):
    ids = clip_folder(tmp_path / "clips")
    folder = folder_of(tmp_path / "vectors", ids, np.ones(3, np.float32))
    fifo = folder / f"{ids[1]}.npy"
    fifo.unlink()
    os.mkfifo(fifo)
    raised = raised_within(lambda: embeddings_plan(tmp_path, folder), fifo)
    assert isinstance(raised, ConfigError) and f"{fifo} is a FIFO (named pipe), not a regular file" in str(raised)


def test_the_embeddings_identity_does_not_block_on_a_fifo_that_appeared_in_the_folder(tmp_path):
    """The cache key hashes every .npy of the folder (extra ones too): a FIFO named like one,
    come after the vectors were read, is named rather than waited on."""
    ids = clip_folder(tmp_path / "clips")
    embeddings = Embeddings(str(folder_of(tmp_path / "vectors", ids, np.ones(3, np.float32))))
    fifo = tmp_path / "vectors" / "extra.npy"
    os.mkfifo(fifo)
    raised = raised_within(embeddings.identity, fifo)
    assert isinstance(raised, ConfigError) and f"{fifo} is a FIFO (named pipe), not a regular file" in str(raised)


def test_the_command_line_names_a_pickled_embeddings_file_in_one_line(tmp_path):
    """A vector saved as a dict (np.save pickles it): one line naming the file, no traceback,
    nothing logged or cached."""
    ids = clip_folder(tmp_path / "clips")
    folder = folder_of(tmp_path / "vectors", ids, {"scene": np.ones(3)})
    proc = run_cli("elm_audio", *folder_run(tmp_path, "frontend=embeddings", f"frontend.path={folder}"), cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"elm_audio: frontend.path: {folder / ids[0]}.npy cannot be read as NumPy numbers "
        "(Object arrays cannot be loaded when allow_pickle=False); save numeric arrays with np.save or np.savez"
    ]
    assert not (tmp_path / "mlruns").exists() and not cache_entries(tmp_path / "cache")
