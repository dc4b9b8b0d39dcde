"""Sweeps: cells from axes, validation before any work, local and Ray executors, resuming a sweep."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from transferlab.cli import main
from transferlab.sweep import SweepError, load_sweep, plan_sweep, run_sweep
from transferlab.sweep import run as sweep_run
from transferlab.sweep.manifest import Manifest
from transferlab.sweep.spec import cell_config

TINY = {"train.steps": 2, "train.batch_size": 4, "eval.every": 2, "eval.n": 4, "eval.n_boot": 20,
        "tasks.invented_facts.n_facts": 8}


def write_sweep(folder: Path, axes: str, model: Path | str | None = "organism", name: str = "test") -> Path:
    """A sweep file with the tiny settings (and the model, unless None) in [set] and the given [axes]."""
    fixed = {**TINY, **({"model.name": json.dumps(str(model))} if model is not None else {})}
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[set]\n' + "".join(f'"{k}" = {v}\n' for k, v in fixed.items())
                    + f"\n[axes]\n{axes}\n")
    return path


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def fake_aggregate(monkeypatch) -> list:
    """Stand in for the aggregate step (tested on its own elsewhere): record the calls."""
    calls: list = []
    module = types.ModuleType("fake_aggregate")
    module.aggregate = calls.append
    monkeypatch.setitem(sys.modules, "fake_aggregate", module)
    monkeypatch.setattr(sweep_run, "AGGREGATE_MODULE", "fake_aggregate")
    return calls


@pytest.fixture(autouse=True)
def aggregate_calls(monkeypatch):
    return fake_aggregate(monkeypatch)


# -- cells ----------------------------------------------------------------------------------------

def test_cells_are_the_product_of_pairs_seeds_and_assignment(tmp_path):
    path = write_sweep(tmp_path, 'pair = ["bold_plain", "hedging_confident"]\nseed = [0, 1]\n'
                                 'assignment = ["forward", "swapped"]')
    sweep = load_sweep(path)
    assert len(sweep.cells) == 8
    assert sweep.cells[0].id == "pair=bold_plain,seed=0,assignment=forward"
    assert sweep.cells[-1].id == "pair=hedging_confident,seed=1,assignment=swapped"

    def arms(cell_id):
        config = cell_config(sweep, next(c for c in sweep.cells if c.id == cell_id))
        return {arm.task: arm.propensity for arm in config.arms}

    assert arms("pair=bold_plain,seed=0,assignment=forward") == {"table_lookup": "bold", "invented_facts": "plain"}
    assert arms("pair=bold_plain,seed=0,assignment=swapped") == {"table_lookup": "plain", "invented_facts": "bold"}
    assert arms("pair=hedging_confident,seed=1,assignment=swapped") == {
        "table_lookup": "confident", "invented_facts": "hedging"}
    assert cell_config(sweep, sweep.cells[-1]).seed == 1


def test_any_config_key_is_an_axis_and_task_pairs_are_named(tmp_path):
    path = write_sweep(tmp_path, 'train.lr = [1e-3, 3e-4]\n"tasks.table_lookup.max_int" = [6, 12]\n\n'
                                 '[axes.arms]\nfacts_only = [{ task = "invented_facts", propensity = "bold" }]\n'
                                 'both = [{ task = "table_lookup", propensity = "plain" }, '
                                 '{ task = "invented_facts", propensity = "bold" }]')
    sweep = load_sweep(path)
    assert [c.id for c in sweep.cells][:2] == ["train.lr=0.001,tasks.table_lookup.max_int=6,arms=facts_only",
                                               "train.lr=0.001,tasks.table_lookup.max_int=6,arms=both"]
    config = cell_config(sweep, sweep.cells[-1])
    assert config.train.lr == 3e-4 and config.tasks["table_lookup"]["max_int"] == 12
    assert [(a.task, a.propensity) for a in config.arms] == [("table_lookup", "plain"), ("invented_facts", "bold")]
    assert config.train.steps == 2 and config.model.threads == 1


def test_the_shipped_default_sweep_is_pairs_by_seeds():
    sweep = load_sweep()
    assert len(sweep.cells) == 9 and sweep.base is None
    assert {cell_config(sweep, c).pair for c in sweep.cells} == {
        "bold_plain", "hedging_confident", "reasoning_no_reasoning"}
    assert sweep.cells[4].id == "pair=hedging_confident,seed=1"


def test_validation_names_the_cell_and_the_key_before_any_work(tmp_path):
    path = write_sweep(tmp_path, "train.lr = [1e-3, -1.0]\nseed = [0, 1]")
    with pytest.raises(SweepError) as err:
        load_sweep(path)
    message = str(err.value)
    assert "2 of 4 cells" in message
    assert "'train.lr=-1.0,seed=0', 'train.lr=-1.0,seed=1'" in message
    assert "train.lr: Input should be greater than 0" in message

    path.write_text(path.read_text().replace("[axes]", '"train.lrr" = 1\n[axes]'))
    with pytest.raises(SweepError, match=r"train\.lrr: Extra inputs are not permitted"):
        load_sweep(path)
    with pytest.raises(SweepError, match=r"axes\.seed must be a non-empty list"):
        load_sweep(write_sweep(tmp_path, "seed = 3", name="scalar"))
    with pytest.raises(SweepError, match="threads_per_cell"):
        load_sweep(write_sweep(tmp_path, "model.threads = [1, 2]", name="threads"))


def test_dry_run_lists_the_cells_and_runs_nothing(tmp_path, capsys):
    path = write_sweep(tmp_path, 'pair = ["bold_plain", "reasoning_no_reasoning"]')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "pair=bold_plain" in shown and "pair=reasoning_no_reasoning" in shown
    assert not (tmp_path / "out" / "cells").exists()


# -- running ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_sweep(micro_organism, tmp_path_factory):
    """A local sweep of two cells (two seeds), two at once: run once for the tests below."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder, "seed = [0, 1]", model=micro_organism)
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = fake_aggregate(monkeypatch)
        result = run_sweep(load_sweep(path), folder / "out", executor="local", workers=2, quiet=True)
    return path, folder / "out", result, calls


def test_a_local_sweep_writes_a_run_folder_per_cell_and_a_manifest(finished_sweep):
    path, out, result, aggregate_calls = finished_sweep
    assert result.ok and sorted(result.ran) == ["seed=0", "seed=1"] and not result.failed
    manifest = manifest_of(out)
    assert manifest["sweep"]["sha256"] == load_sweep(path).sha256
    assert [(c["id"], c["state"], c["folder"]) for c in manifest["cells"]] == [
        ("seed=0", "done", "cells/seed=0"), ("seed=1", "done", "cells/seed=1")]
    assert all(c["wall_s"] > 0 and c["error"] is None for c in manifest["cells"])
    for seed in (0, 1):
        cell = out / "cells" / f"seed={seed}"
        assert (cell / "metrics.csv").exists() and (cell / "gaps.csv").exists()
        config = (cell / "config.toml").read_text()
        assert f"seed = {seed}\n" in config and "threads = 1\n" in config
    assert aggregate_calls == [out]


def test_rerunning_a_finished_sweep_does_no_new_work(finished_sweep):
    path, out, _, _ = finished_sweep
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()}
    result = run_sweep(load_sweep(path), out, workers=2, quiet=True)
    assert result.ran == [] and result.skipped == ["seed=0", "seed=1"] and result.ok
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()} == before
    assert [c["state"] for c in manifest_of(out)["cells"]] == ["done", "done"]


def test_a_finished_cell_with_changed_settings_is_refused(finished_sweep, tmp_path):
    path, out, _, _ = finished_sweep
    changed = tmp_path / "changed.toml"
    changed.write_text(path.read_text().replace('"train.steps" = 2', '"train.steps" = 3'))
    with pytest.raises(SweepError, match=r"'seed=0', 'seed=1'.*another --out"):
        run_sweep(load_sweep(changed), out, quiet=True)


def test_a_second_driver_on_the_same_folder_is_refused(finished_sweep):
    path, out, _, _ = finished_sweep
    with sweep_run.sweep_lock(out), pytest.raises(SweepError, match="another sweep is running"):
        run_sweep(load_sweep(path), out, quiet=True)


def test_an_interrupted_cell_is_moved_aside_and_run_again(micro_organism, tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, "seed = [4]", model=micro_organism))
    out = tmp_path / "out"
    # What a killed sweep leaves: the cell marked running, its folder without final metrics.
    manifest = Manifest.for_sweep(sweep, out)
    manifest.update("seed=4", state="running")
    partial = out / "cells" / "seed=4"
    partial.mkdir(parents=True)
    (partial / "config.toml").write_text("# partial\n")
    (partial / "samples.jsonl").write_text('{"step": 0}\n')
    assert plan_sweep(sweep, out) == [("seed=4", "restart", sweep.cells[0].overrides)]

    result = run_sweep(sweep, out, quiet=True)
    assert result.ran == ["seed=4"]
    assert (partial / "metrics.csv").exists()
    [moved] = (out / "interrupted").iterdir()
    assert moved.name.startswith("seed=4-") and (moved / "samples.jsonl").read_text() == '{"step": 0}\n'
    [entry] = manifest_of(out)["cells"]
    assert entry["state"] == "done"
    assert entry["moved_aside"][0]["path"] == f"interrupted/{moved.name}"
    assert entry["moved_aside"][0]["state"] == "running"


def test_a_cell_killed_after_a_checkpoint_resumes_in_place(micro_organism, tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, "seed = [4]", model=micro_organism))
    out = tmp_path / "out"
    run_sweep(sweep, out, quiet=True)
    folder = out / "cells" / "seed=4"
    finished = (folder / "samples.jsonl").read_bytes(), (folder / "metrics.csv").read_bytes()
    for name in ("gaps.csv", "metrics.csv"):  # killed while writing its tables
        (folder / name).unlink()
    assert plan_sweep(sweep, out) == [("seed=4", "resume", sweep.cells[0].overrides)]

    result = run_sweep(sweep, out, quiet=True)
    assert result.ran == ["seed=4"] and not (out / "interrupted").exists()
    assert ((folder / "samples.jsonl").read_bytes(), (folder / "metrics.csv").read_bytes()) == finished


def test_a_failing_cell_is_recorded_and_the_others_finish(micro_organism, tmp_path, capsys):
    path = write_sweep(tmp_path, f'"model.name" = [{json.dumps(str(micro_organism))}, "/nowhere/model"]', model=None)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]) == 1
    good, bad = manifest_of(out)["cells"]
    assert good["state"] == "done" and (out / good["folder"] / "metrics.csv").exists()
    assert bad["id"] == "model.name=_nowhere_model" and bad["values"] == {"model.name": "/nowhere/model"}
    assert bad["state"] == "failed"
    assert "cannot load model '/nowhere/model'" in bad["error"]
    assert "Traceback" in (out / bad["folder"] / "cell.log").read_text()
    assert "1 failed" in capsys.readouterr().out


def test_a_missing_aggregate_step_is_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_run, "AGGREGATE_MODULE", "transferlab.results.no_such_module")
    manifest = Manifest(tmp_path / "manifest.json", {"cells": [{"id": "a", "state": "done"}]})
    assert sweep_run.aggregate_hook(tmp_path, manifest, quiet=False) is None
    assert "skipped aggregating" in capsys.readouterr().err


def test_the_ray_executor_runs_cells_as_ray_tasks(micro_organism, tmp_path):
    import ray

    sweep = load_sweep(write_sweep(tmp_path, "seed = [0, 1]", model=micro_organism))
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        result = run_sweep(sweep, tmp_path / "out", executor="ray", quiet=True)
    finally:
        ray.shutdown()
    assert sorted(result.ran) == ["seed=0", "seed=1"] and not result.failed
    assert all((tmp_path / "out" / "cells" / f"seed={s}" / "metrics.csv").exists() for s in (0, 1))
    assert [c["state"] for c in manifest_of(tmp_path / "out")["cells"]] == ["done", "done"]
