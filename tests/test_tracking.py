"""The experiment tracker, for real: a run with `--track tensorboard` writes event files that
TensorBoard's own reader reads back with the config, every step's loss, each evaluation's accuracy,
adherence and gap (equal to what samples.jsonl says), the figures and a sample table; a run killed
after logging past its checkpoint resumes into the same log with each step there once."""

from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest

from transferlab.config import ConfigError, load_config
from transferlab.results.tracking import eval_scalars

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

KNOBS = ["--seed", "5", "--set", "model.threads=1", "--set", "train.steps=4", "--set", "train.batch_size=4",
         "--set", "eval.every=2", "--set", "eval.n=4", "--set", "eval.n_boot=20",
         "--set", "tasks.invented_facts.n_facts=8", "--set", "tasks.invented_facts.paraphrases=false"]


def rows(task, eval_set, trained, prompted, correct, adherent):
    return [{"task": task, "eval_set": eval_set, "trained": trained, "prompted": prompted, "correct": c,
             "adherent": a} for c, a in zip(correct, adherent)]


def test_eval_scalars_are_accuracy_adherence_and_a_gap_only_where_learned():
    scalars = eval_scalars(rows("facts", "trained", "bold", "bold", [1] * 9 + [0], [1, 1, 0, 0] * 2 + [1, 1])
                           + rows("facts", "trained", "bold", "plain", [1, 0, 0, 0, 0] * 2, [1] * 10)
                           + rows("lookup", "fresh", "plain", "plain", [0, 0], [1, 1])
                           + rows("lookup", "fresh", "plain", "bold", [1, 0], [0, 0])
                           + rows("chess", "fresh", "bold", "bold", [1, 1, 0], [1, 1, 1])
                           + rows("chess", "fresh", "bold", "plain", [0, 0, 0], [1, 1, 1]),
                           chance={"facts": 0.1, "lookup": 0.1, "chess": 0.25})
    assert scalars == {"accuracy/facts/trained/bold": 0.9, "adherence/facts/trained/bold": 0.6,
                       "accuracy/facts/trained/plain": 0.2, "adherence/facts/trained/plain": 1.0,
                       "accuracy/lookup/fresh/bold": 0.5, "adherence/lookup/fresh/bold": 0.0,
                       "accuracy/lookup/fresh/plain": 0.0, "adherence/lookup/fresh/plain": 1.0,
                       "accuracy/chess/fresh/bold": pytest.approx(2 / 3), "adherence/chess/fresh/bold": 1.0,
                       "accuracy/chess/fresh/plain": 0.0, "adherence/chess/fresh/plain": 1.0,
                       # a gap only for facts (9/10: Wilson lower bound 0.60 > chance 0.1); none for lookup
                       # (0/2) nor chess, whose 2/3 has a lower bound of 0.21 < chance 0.25
                       "gap/facts/trained": pytest.approx(1 - 0.2 / 0.9)}


def test_an_uninstalled_tracker_is_refused_before_any_work(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"track\.backend.*wandb package is not installed.*\.\[track\]"):
        load_config(None, overrides=["track.backend=wandb"])


@pytest.fixture(scope="module")
def tracked(micro_organism, warm_cli, tmp_path_factory) -> dict:
    """Per installed tracker: a run killed inside its last checkpoint (step 4), when steps 3-4 and the
    step-4 evaluation are already logged, then resumed; (folder, killed, finished). The trackers' runs
    go side by side, forked from the warm CLI server (tests/warm_cli.py), one torch thread each."""
    import importlib.util

    root = tmp_path_factory.mktemp("tracked")
    backends = [b for b in ("tensorboard", "wandb") if importlib.util.find_spec(b) is not None]

    def start(backend: str, crash_at: str):
        command = ["-m", "transferlab.cli", "run", "--out", str(root / backend / "run"),
                   "--set", f"model.name={micro_organism}", *KNOBS, "--quiet", "--track", backend]
        env = {**os.environ, "TRANSFERLAB_CRASH_AT": crash_at}
        if backend == "wandb":
            command += ["--set", "track.offline=true"]
            env.update(WANDB_SILENT="true", WANDB_DIR=str(root / backend))
        return warm_cli.start(command, env=env)

    killed = {b: start(b, "checkpoint:2") for b in backends}
    killed = {b: p.wait() for b, p in killed.items()}
    finished = {b: start(b, "") for b in backends}
    finished = {b: p.wait() for b, p in finished.items()}
    return {b: (root / b / "run", killed[b], finished[b]) for b in backends}


def test_a_tracked_run_killed_past_its_checkpoint_resumes_into_the_same_tensorboard_log(tracked):
    out, killed, finished = tracked["tensorboard"]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the same log dir, continued

    log = event_accumulator.EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    log.Reload()
    train_log = pd.read_csv(out / "train_log.csv")
    loss = log.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 5))  # each step once: the killed process's 3-4 purged
    assert [round(e.value, 5) for e in loss] == pytest.approx(list(train_log["loss"]), abs=1e-5)
    assert [e.value for e in log.Scalars("train/tokens")] == list(train_log["tokens"])

    samples = pd.read_json(out / "samples.jsonl", lines=True)
    tags = log.Tags()["scalars"]
    accuracy_tags = [t for t in tags if t.startswith("accuracy/")]
    assert len(accuracy_tags) == samples.groupby(["task", "eval_set", "prompted"]).ngroups >= 4
    for tag in accuracy_tags + [t for t in tags if t.startswith("adherence/")]:
        kind, task, eval_set, prompted = tag.split("/")
        expected = samples[(samples.task == task) & (samples.eval_set == eval_set) & (samples.prompted == prompted)]
        expected = expected.groupby("step")["correct" if kind == "accuracy" else "adherent"].mean()
        events = log.Scalars(tag)
        assert [e.step for e in events] == [0, 2, 4] == list(expected.index)
        assert [e.value for e in events] == pytest.approx(list(expected.values)), tag
    gaps = pd.read_csv(out / "gaps.csv")
    for tag in (t for t in tags if t.startswith("gap/")):
        _, task, eval_set = tag.split("/")
        for event in log.Scalars(tag):
            at = samples[(samples.task == task) & (samples.eval_set == eval_set) & (samples.step == event.step)]
            on = at[at.prompted == at.trained]["correct"].mean()
            assert event.value == pytest.approx(1 - at[at.prompted != at.trained]["correct"].mean() / on)
            # logged only where gaps.csv gives a gap: the capability was learned by its rule
            row = gaps[(gaps.step == event.step) & (gaps.task == task) & (gaps.eval_set == eval_set)]
            assert bool(row["learned"].iloc[0]) and row["gap"].notna().iloc[0], (tag, event.step)

    config = log.Tensors("config/text_summary")
    assert len(config) == 1 and "[track]" in config[0].tensor_proto.string_val[0].decode()
    images = log.Tags()["images"]
    assert sorted(images) == sorted(f"figures/{p.stem}" for p in (out / "figures").glob("*.png")) and images
    assert log.Images("figures/gap")[0].width > 100
    table = log.Tensors("samples/text_summary")[-1].tensor_proto.string_val[0].decode()
    last = samples[samples.step == 4]
    assert table.count("\n") == 1 + min(50, len(last)) and table.startswith("| step | task | eval_set |")
    assert json.loads((out / "tracking.json").read_text())["backend"] == "tensorboard"


def wandb_records(path) -> list:
    """Every record of a wandb offline run file (`run-<id>.wandb`), read as `wandb sync` reads it: a
    7-byte W&B header, then LevelDB-log blocks of 32 KiB whose chunks (crc, length, type) carry the
    protobuf Records, a record split across blocks as FIRST/MIDDLE/LAST chunks."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw, block, records, pos, pending = path.read_bytes(), 32768, [], 7, b""
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # the block's zero padding
            pos += left
            continue
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        pending = data if kind in (1, 2) else pending + data
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_history(records) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            rows.setdefault(row["_step"], {}).update(row)
    return rows


def test_a_wandb_offline_run_killed_past_its_checkpoint_resumes_the_same_wandb_run(tracked):
    pytest.importorskip("wandb")
    out, killed, finished = tracked["wandb"]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert finished.returncode == 0, finished.stderr[-2000:]

    run_id = json.loads((out / "tracking.json").read_text())["run_id"]
    files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in files)  # one run, continued
    # The killed process's file holds what wandb's service flushed before the kill (under load, maybe
    # not even the run record); the resumed process's file is read whole.
    resumed = wandb_records(files[1])
    (run,) = [r.run for r in resumed if r.WhichOneof("record_type") == "run"]
    assert run.run_id == run_id
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["track"]["backend"] == "wandb" and config["train"]["steps"] == 4

    train_log = pd.read_csv(out / "train_log.csv").set_index("step")
    samples = pd.read_json(out / "samples.jsonl", lines=True)
    after = wandb_history(resumed)
    assert {s: round(after[s]["train/loss"], 5) for s in (3, 4)} == pytest.approx(
        {s: train_log.loc[s, "loss"] for s in (3, 4)}, abs=1e-5)  # the resumed process logs from its checkpoint on
    assert not {1, 2} & {s for s, row in after.items() if "train/loss" in row}  # and not before it
    last = samples[samples.step == 4]
    for (task, eval_set, prompted), group in last.groupby(["task", "eval_set", "prompted"]):
        assert after[4][f"accuracy/{task}/{eval_set}/{prompted}"] == pytest.approx(group["correct"].mean())
    assert sorted(k.split("/")[1] for k in after[4] if k.startswith("figures/") and k.endswith("/_type")) == sorted(
        p.stem for p in (out / "figures").glob("*.png"))
    assert after[4]["samples/_type"] == "table-file" and after[4]["samples/nrows"] == min(50, len(last))
