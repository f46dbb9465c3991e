"""The import: a HEAR module's scene embeddings (frontend=hear) or vectors computed elsewhere
(frontend=embeddings) as a run's feature matrix, through the same cache, protocols, MLflow
records and report as elm_audio's own front-ends."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.audio import tone_folder
from helpers.runs import local_uri, logged_runs

from elm_audio.config import ConfigError, compose
from elm_audio.report.build import build
from elm_audio.run.plan import make_plan
from elm_audio.run.runner import run
from elm_audio.settings.settings import load as load_settings
from elm_audio.sound.decode import load
from elm_audio.stores.cache import FeatureCache

# A third-party HEAR module as one would write it: 16 kHz, a random 1-D convolution, means.
TINY_HEAR = '''
import torch

__version__ = "0.3"


class Tiny(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = 8
    timestamp_embedding_size = 8

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv1d(1, 8, kernel_size=64, stride=32)


def load_model(model_file_path="", seed=0):
    model = Tiny(seed)
    if model_file_path:
        model.load_state_dict(torch.load(model_file_path))
    return model


def get_scene_embeddings(audio, model):
    return torch.relu(model.conv(audio[:, None])).mean(-1)


def get_timestamp_embeddings(audio, model):
    h = torch.relu(model.conv(audio[:, None])).transpose(1, 2)
    return h, (torch.arange(h.shape[1]) * 2.0)[None].expand(len(audio), -1)
'''


def twelve_khz_folder(root: Path) -> Path:
    """Two classes of three 1 s clips at 12 kHz, the method's rate (no resampling anywhere)."""
    return tone_folder(root, 3, sr=12_000)


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def folder_run(workdir: Path, *overrides: str) -> list[str]:
    return ["dataset=folder", f"dataset.root={workdir / 'clips'}", "dataset.n_folds=3", "extract.progress=false",
            "extract.num_workers=0", "device=cpu", f"cache.dir={workdir / 'cache'}", *overrides]  # fmt: skip


OWN_EXPORT = ["frontend=hear", "frontend.module=elm_audio.hear",
              "frontend.options={frontend: temporal, feature_size: small, seed: 4, sample_rate: 12000}"]  # fmt: skip


def test_our_hear_export_imported_gives_the_run_features_and_the_report_sets_imports_beside_them(workdir):
    """The round trip: frontend=hear on elm_audio.hear (temporal, seed 4, at 12 kHz) gives the
    matrix of a temporal seed-4 run on the same clips, to float32 rounding; that matrix saved
    as an .npz runs as frontend=embeddings; the report shows both, labelled imported, beside
    the native front-end."""
    twelve_khz_folder(workdir / "clips")
    native_cfg = compose(folder_run(workdir, "frontend=temporal", "seed=4"))
    imported_cfg = compose(folder_run(workdir, *OWN_EXPORT))
    for cfg in (native_cfg, imported_cfg):
        run(cfg)
    cache = FeatureCache(workdir / "cache")
    native, imported = (cache.load(make_plan(load_settings(cfg)).key) for cfg in (native_cfg, imported_cfg))
    assert native.key != imported.key and native.clip_ids == imported.clip_ids
    np.testing.assert_allclose(imported.matrix, native.matrix, rtol=1e-6, atol=1e-6)

    np.savez(workdir / "vectors.npz", clip_ids=np.array(native.clip_ids), embeddings=native.matrix)
    run(compose(folder_run(workdir, "frontend=embeddings", f"frontend.path={workdir / 'vectors.npz'}", "frontend.label=elsewhere")))

    client, runs = logged_runs(workdir, dataset="folder")
    by_name = {r.data.tags["frontend"]: r for r in runs}
    assert set(by_name) == {"temporal", "hear-elm_audio.hear", "elsewhere"}
    assert all(r.info.status == "FINISHED" for r in runs)
    hear_run = by_name["hear-elm_audio.hear"]
    assert hear_run.data.params["n_params"] == by_name["temporal"].data.params["n_params"]  # a torch module: its parameters
    assert hear_run.data.params["frontend.options.seed"] == "4"
    assert hear_run.data.metrics["gflops_per_clip"] > 0
    # the same classifier on the same matrix: the same scores
    assert hear_run.data.metrics["test_accuracy"] == by_name["temporal"].data.metrics["test_accuracy"]
    assert by_name["elsewhere"].data.metrics["test_accuracy"] == by_name["temporal"].data.metrics["test_accuracy"]

    experiment = client.get_experiment_by_name("elm_audio/folder").experiment_id
    report = build(local_uri(workdir), "folder", experiment, workdir / "reports")
    kinds = report.summary.drop_duplicates("frontend").set_index("frontend")["input"]
    assert kinds.to_dict() == {"temporal": "spectrogram", "hear-elm_audio.hear": "imported", "elsewhere": "imported"}
    table = (workdir / "reports" / "folder" / "table.md").read_text()
    assert re.search(r"\| hear-elm_audio\.hear +\| imported +\|", table) and re.search(r"\| elsewhere +\| imported +\|", table)
    assert not any("hear" in n or "embeddings" in n for n in report.notes if n.startswith("No runs"))


def test_the_cache_key_names_the_module_its_options_and_its_model_file(workdir):
    twelve_khz_folder(workdir / "clips")
    (workdir / "tiny_hear.py").write_text(TINY_HEAR)
    sys.path.insert(0, str(workdir))
    try:
        torch.save(__import__("tiny_hear").load_model(seed=1).state_dict(), workdir / "a.pt")
        torch.save(__import__("tiny_hear").load_model(seed=2).state_dict(), workdir / "b.pt")
        key = lambda *o: make_plan(load_settings(compose(folder_run(workdir, "frontend=hear", "frontend.module=tiny_hear", *o)))).key  # noqa: E731
        first = key(f"frontend.model_file={workdir / 'a.pt'}")
        assert first == key(f"frontend.model_file={workdir / 'a.pt'}")
        (workdir / "a.pt").write_bytes((workdir / "b.pt").read_bytes())  # same path, other weights
        assert key(f"frontend.model_file={workdir / 'a.pt'}") != first
        assert key("frontend.options={seed: 3}") != key("frontend.options={seed: 4}")
        plan = make_plan(load_settings(compose(folder_run(workdir, "frontend=hear", "frontend.module=tiny_hear"))))
        assert plan.profile["n_params"] == 8 * 64 + 8 and plan.profile["feature_dim"] == 8
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("tiny_hear", None)


def test_a_third_party_hear_module_runs_through_frontend_hear_end_to_end(workdir, capsys):
    """A HEAR module written here (16 kHz): the run decodes each clip whole at 16 kHz, its rows
    are the module's scene embeddings of those clips, and MLflow records it as any run."""
    clips = twelve_khz_folder(workdir / "clips")
    (workdir / "mods").mkdir()
    (workdir / "mods" / "tiny_hear.py").write_text(TINY_HEAR)
    sys.path.insert(0, str(workdir / "mods"))
    try:
        run(compose(folder_run(workdir, "frontend=hear", "frontend.module=tiny_hear", "frontend.options={seed: 5}")))
        tiny = __import__("tiny_hear")
        model = tiny.load_model(seed=5)
        files = {p.relative_to(clips).with_suffix("").as_posix(): p for p in clips.rglob("*.wav")}
        expected = {cid: tiny.get_scene_embeddings(torch.from_numpy(load(f, 16_000))[None], model).detach().numpy()[0]
                    for cid, f in files.items()}  # fmt: skip
    finally:
        sys.path.remove(str(workdir / "mods"))
        sys.modules.pop("tiny_hear", None)
    out = capsys.readouterr().out
    assert "hear-tiny_hear" in out and "8 values" in out
    client, (logged,) = logged_runs(workdir, dataset="folder")
    assert logged.info.status == "FINISHED" and logged.data.params["n_params"] == str(8 * 64 + 8)
    assert {"val_accuracy", "test_accuracy", "fold1_test_accuracy", "extract_seconds"} <= set(logged.data.metrics)
    saved = np.load(client.download_artifacts(logged.info.run_id, "features/features.npz", str(workdir)))
    np.testing.assert_allclose(saved["features"], np.stack([expected[c] for c in saved["clip_ids"]]), rtol=1e-5, atol=1e-6)


def test_frontend_embeddings_names_missing_clips_and_refuses_wrong_widths(workdir):
    twelve_khz_folder(workdir / "clips")
    ids = sorted(p.relative_to(workdir / "clips").with_suffix("").as_posix() for p in (workdir / "clips").rglob("*.wav"))
    vectors = workdir / "vectors"
    for i, cid in enumerate(ids[1:]):  # the first clip has no vector
        (vectors / cid).parent.mkdir(parents=True, exist_ok=True)
        np.save(vectors / f"{cid}.npy", np.full(5, i, np.float32))
    cfg = compose(folder_run(workdir, "frontend=embeddings", f"frontend.path={vectors}"))
    with pytest.raises(ConfigError, match=f"no vector for 1 of 6 clip\\(s\\): {ids[0]}"):
        make_plan(load_settings(cfg))
    np.save(vectors / f"{ids[0]}.npy", np.zeros(5, np.float32))
    plan = make_plan(load_settings(cfg))
    assert plan.profile["feature_dim"] == 5 and plan.profile["input"] == "imported"
    np.save(vectors / f"{ids[2]}.npy", np.zeros(7, np.float32))
    with pytest.raises(ConfigError, match=f"different widths \\(5, 7\\); e.g. {ids[2]} has 7 values where most have 5"):
        make_plan(load_settings(cfg))
    np.savez(workdir / "flat.npz", clip_ids=np.array(ids), embeddings=np.zeros((5, 3)))
    with pytest.raises(ConfigError, match="embeddings are \\(5, 3\\) for 6 clip ids"):
        make_plan(load_settings(compose(folder_run(workdir, "frontend=embeddings", f"frontend.path={workdir / 'flat.npz'}"))))
    with pytest.raises(ConfigError, match="frontend=embeddings needs frontend.path="):
        make_plan(load_settings(compose(folder_run(workdir, "frontend=embeddings"))))
    with pytest.raises(ConfigError, match="frontend.module=no_such_module: cannot be imported"):
        make_plan(load_settings(compose(folder_run(workdir, "frontend=hear", "frontend.module=no_such_module"))))
    with pytest.raises(ConfigError, match="weights=trained trains elm_audio's own front-ends"):
        make_plan(load_settings(compose(folder_run(workdir, *OWN_EXPORT, "weights=trained"))))
