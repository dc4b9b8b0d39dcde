"""One experiment, top to bottom: data, SFT on a mixture of arms, evaluation every k steps, results.

Reads like the run it performs: build tasks and the eval grid, evaluate the untouched model (step 0),
then train, evaluating every `eval.every` steps, and finally write metrics and figures.
"""

from __future__ import annotations

import base64
import json
import random
import time
from pathlib import Path

import pandas as pd
import torch

from transferlab.backends import open_backend
from transferlab.config import ExperimentConfig, dump_config, load_config, make_tasks
from transferlab.evaluate.grid import build_grid, evaluate
from transferlab.evaluate.vllm_sampler import choose_sampler, make_sampler
from transferlab.judges import make_judge
from transferlab.propensities import get_propensity, prompt_with
from transferlab.results.crash_points import crash_point
from transferlab.results.figures import plot_accuracy, plot_adherence, plot_gap, plot_loss
from transferlab.results.metrics import condition_metrics, gap_metrics
from transferlab.results.off_task import off_task
from transferlab.results.progress import RunProgress
from transferlab.results.run_folder import STATE_FILE, RunFolder, atomic_write
from transferlab.results.tracking import open_tracker
from transferlab.tasks.skipped import skipped_lines
from transferlab.train.render import render_datum
from transferlab.train.replay import describe, replay_count, replay_stream
from transferlab.train.schedule import lr_at
from transferlab.writers.template import TemplateWriter


def draw_batch(config: ExperimentConfig, streams: dict, rng: random.Random) -> list[tuple[int, object, str]]:
    """`batch_size` (arm, example, target) triples, arms drawn by weight; each arm's (example,
    target) pairs come from its own stream. Every random choice of the data is made here, so a
    resumed run replays these draws to stand where the killed one stood."""
    arms = config.arms
    replayed = replay_count(config.train.replay, config.train.batch_size)
    picks = rng.choices(range(len(arms)), [a.weight for a in arms], k=config.train.batch_size - replayed)
    return [(i, *next(streams[i])) for i in picks] + [(None, *next(streams["replay"])) for _ in range(replayed)]


def training_batch(config: ExperimentConfig, streams: dict, tokenizer, rng: random.Random) -> list:
    """The next batch of datums: drawn, then rendered with each arm's propensity prompt (replayed
    curriculum examples, arm None, come already prompted)."""
    return [render_datum(tokenizer, example if i is None else
                         prompt_with(example, get_propensity(config.arms[i].propensity)), target,
                         thinking=config.model.thinking)
            for i, example, target in draw_batch(config, streams, rng)]


def example_stream(task, propensity, writer, rng: random.Random, chunk: int = 256):
    """Fresh examples and their targets, written `chunk` at a time."""
    while True:
        examples = task.train_examples(rng, chunk)
        yield from zip(examples, writer.write(examples, propensity))


def pooled_stream(pairs: list[tuple], rng: random.Random):
    """Cycle a fixed pool of (example, target) pairs in a fresh order each pass."""
    while True:
        order = list(range(len(pairs)))
        rng.shuffle(order)
        yield from (pairs[i] for i in order)


def training_streams(config: ExperimentConfig, tasks: dict, folder: RunFolder, progress) -> dict:
    """One (example, target) stream per arm: template targets written as examples are drawn, or a
    pool of `writer_pool` examples per arm written once by the LLM writer (cached on disk)."""
    streams, log = {}, []
    if config.train.replay:
        streams["replay"] = replay_stream(config.seed)
        if folder is not None:  # benchmarks draw batches without a run folder
            atomic_write(folder.path / "replay.json", json.dumps(describe(config.train.replay, config.train.batch_size)))
    for i, arm in enumerate(config.arms):
        rng = random.Random(f"{arm.task}-{config.seed}-{i}")
        propensity = get_propensity(arm.propensity)
        if config.train.writer == "template":
            streams[i] = example_stream(tasks[arm.task], propensity, TemplateWriter(config.seed), rng)
            continue
        from transferlab.llm.client import ChatClient
        from transferlab.writers.llm import LLMWriter

        progress.stage(f"writing {arm.task} targets ({arm.propensity}) with the LLM")
        writer = LLMWriter(ChatClient.from_env(), Path(config.llm.cache) / "writer",
                           concurrency=config.llm.concurrency, progress=False)
        examples = tasks[arm.task].train_examples(rng, config.train.writer_pool)
        result = writer.write(examples, propensity)
        progress.console.print(f"llm writer, {arm.task} ({arm.propensity}): {result.summary()}", highlight=False)
        log.append({"arm": i, "task": arm.task, "propensity": arm.propensity, "written": result.written,
                    "cached": result.cached, "rejected": result.rejected, "failed": result.failed,
                    "errors": result.errors})
        folder.write_jsonl(folder.path / "writer.jsonl", log)
        pairs = [(e, t) for e, t in zip(examples, result.targets) if t is not None]
        if not pairs:
            raise RuntimeError(
                f"the llm writer produced no usable target for {arm.task} ({arm.propensity}): "
                f"{result.summary()}. Check the endpoint (TRANSFERLAB_LLM_*), or use train.writer = \"template\"")
        streams[i] = pooled_stream(pairs, rng)
    return streams


def summarise(rows: list[dict]) -> dict[tuple[str, str], float]:
    """Accuracy per (task, prompted) on each task's first eval set, for the progress line."""
    first_set: dict[str, str] = {}
    totals: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        first_set.setdefault(row["task"], row["eval_set"])
        if row["eval_set"] == first_set[row["task"]]:
            t = totals.setdefault((row["task"], row["prompted"]), [0, 0])
            t[0] += row["correct"]
            t[1] += 1
    return {k: c / n for k, (c, n) in totals.items()}


def run_experiment(config: ExperimentConfig, out: str | Path, *, quiet: bool = False,
                   force_new: bool = False) -> RunFolder:
    """Run the experiment into `out`, or resume the run already there from its latest checkpoint:
    the data draws are replayed, the weights, optimizer and RNG restored, and the results newer
    than the checkpoint written again, so the finished folder equals an uninterrupted run's."""
    tasks = make_tasks(config)  # a bad data file stops here, before any folder exists
    sampling = choose_sampler(config.eval, config.model)  # and eval.sampler = "vllm" where vLLM cannot run
    folder = RunFolder(out)
    resumed = folder.open(dump_config(config), force_new=force_new,
                          resolve=lambda path: dump_config(load_config(path)))
    done = resumed["step"] if resumed else 0
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    trained = {arm.task: arm.propensity for arm in config.arms}
    chance = {name: task.chance() for name, task in tasks.items()}
    folder.write_skipped(skipped_lines(tasks))  # every data-file line the tasks skipped
    tracker = open_tracker(config.track, folder, dump_config(config), config.model_dump(mode="json"),
                           done if resumed else None)
    progress = RunProgress(total_steps=config.train.steps, quiet=quiet, completed=done)
    with progress:
        if folder.replaced:
            progress.console.print(f"--force-new: the earlier run is now in {folder.replaced}", highlight=False)
        progress.console.print("chance accuracy: " + ", ".join(f"{k} {v:.1%}" for k, v in chance.items()),
                               highlight=False)
        eval_rng = random.Random(f"eval-{config.seed}")
        grid = build_grid(tasks, trained, eval_rng, config.eval.n)
        train_rng = random.Random(f"train-{config.seed}")
        streams = training_streams(config, tasks, folder, progress)
        judge = make_judge(config.eval.judge, Path(config.llm.cache) / "judge", config.llm.concurrency)
        progress.stage("loading model")
        latest = folder.checkpoints / "latest"
        backend = open_backend(config.model, config.train.batch_size,
                               loss_normalization=config.train.loss_normalization,
                               weight_decay=config.train.weight_decay, resume_from=latest if resumed else None)
        sampler = make_sampler(backend, config, sampling)
        if resumed:
            progress.stage(f"resuming at step {done}")
            progress.console.print(f"resuming {folder.path} from its checkpoint at step {done}", highlight=False,
                                   soft_wrap=True)
            for _ in range(done):
                draw_batch(config, streams, train_rng)
            restore_rng(latest)  # the weights and optimizer came with the backend
            if done >= config.train.steps:
                progress.console.print("training had finished: writing the tables and figures again", highlight=False)

        def run_eval(step: int) -> None:
            progress.stage(f"evaluating step {step}")
            rows = evaluate(sampler, tasks, grid, step=step, seed=config.seed, max_tokens=config.eval.max_tokens,
                            judge=judge)
            folder.append_samples(rows)
            tracker.log_eval(step, rows, chance)
            progress.accuracies(summarise(rows))

        started = time.time() - (resumed["elapsed_s"] if resumed else 0.0)
        tokens = resumed["tokens"] if resumed else 0
        if not resumed:
            run_eval(0)
        for step in range(done + 1, config.train.steps + 1):
            progress.stage("training")
            datums = training_batch(config, streams, backend.tokenizer, train_rng)
            lr = lr_at(step - 1, config.train.steps, config.train.lr, config.train.warmup)
            loss = backend.train_step(datums, lr)
            crash_point("train-step")
            tokens += sum(len(d.input_ids) for d in datums)
            elapsed = round(time.time() - started, 2)
            folder.append_train_log({"step": step, "loss": round(loss, 5), "lr": lr, "tokens": tokens,
                                     "elapsed_s": elapsed})
            tracker.log_train(step, loss=loss, lr=lr, tokens=tokens)
            progress.step(step, loss)
            if step % config.eval.every == 0 or step == config.train.steps:
                run_eval(step)
                folder.save_checkpoint(backend, {"step": step, "tokens": tokens, "elapsed_s": elapsed,
                                                 "torch_rng": torch_rng_state()})
        backend.close("success")  # a hosted service keeps the last checkpoint long and ends the session
        progress.stage("writing metrics and figures")
        write_results(folder, config, chance, tasks)
        tracker.finish(folder)
    return folder


def torch_rng_state() -> str:
    """Torch's CPU generator (dropout, sampling) as text for the checkpoint's state file; Python's
    generators need no saving, since the resumed run replays their draws."""
    return base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()


def restore_rng(path: Path) -> None:
    state = json.loads((path / STATE_FILE).read_text())
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch_rng"])), dtype=torch.uint8))


def write_results(folder: RunFolder, config: ExperimentConfig, chance: dict[str, float], tasks: dict) -> None:
    samples = folder.read_samples()
    samples["off_task"] = off_task(samples, tasks)  # answers in another trained task's answer space
    metrics = condition_metrics(samples)
    metrics["chance"] = metrics["task"].map(chance)
    gaps = gap_metrics(samples, chance=chance, n_boot=config.eval.n_boot, seed=config.seed,
                       adherence_floor=config.eval.adherence_floor)
    # Figures show each task's primary eval set: the first one the task defines (fresh, trained).
    primary = samples.groupby("task", sort=False)["eval_set"].first()
    plot_gap(primary_rows(gaps, primary), folder.figures / "gap.png", title=f"{config.name} (seed {config.seed})")
    plot_accuracy(primary_rows(metrics, primary), folder.figures / "accuracy.png")
    plot_adherence(primary_rows(metrics, primary), folder.figures / "adherence.png",
                   adherence_floor=config.eval.adherence_floor)
    crash_point("figures")
    plot_loss(pd.read_csv(folder.train_log), folder.figures / "loss.png")
    # The tables go last, gaps.csv last of all: a folder holding both is a finished run.
    folder.write_table(folder.metrics, metrics)
    crash_point("results")
    folder.write_table(folder.gaps, gaps)


def primary_rows(frame, primary):
    return frame[frame["eval_set"] == frame["task"].map(primary)]
