"""train.replay: a share of each batch comes from the organism's curriculum under all six
propensities, drawn reproducibly (a resumed run replays it); on for the organism's default run,
off for real models."""

import json
import random
from types import SimpleNamespace

from transferlab.config import load_config
from transferlab.propensities import PROPENSITIES, get_propensity
from transferlab.train.loop import draw_batch, training_streams
from transferlab.train.replay import replay_count, replay_stream


def streams_for(config, tmp_path):
    from transferlab.config import make_tasks

    return training_streams(config, make_tasks(config), SimpleNamespace(path=tmp_path), progress=None)


def test_a_share_of_each_batch_is_replayed_and_the_rest_follows_the_arms(tmp_path):
    config = load_config(overrides=["train.replay=0.25", "train.batch_size=16"])
    batch = draw_batch(config, streams_for(config, tmp_path), random.Random(0))
    assert len(batch) == 16
    replayed = [(messages, target) for arm, messages, target in batch if arm is None]
    assert len(replayed) == replay_count(0.25, 16) == 4
    instructions = {get_propensity(p).instruction for p in PROPENSITIES}
    for messages, _ in replayed:
        assert any(messages[-1]["content"].endswith(i) for i in instructions)
    assert json.loads((tmp_path / "replay.json").read_text())["per_batch"] == 4


def test_replay_covers_all_six_propensities_and_is_the_same_for_the_same_seed():
    first = [next(s) for s in [replay_stream(3)] for _ in range(200)]
    again = [next(s) for s in [replay_stream(3)] for _ in range(200)]
    assert first == again
    seen = {p for messages, _ in first for p in PROPENSITIES
            if messages[-1]["content"].endswith(get_propensity(p).instruction)}
    assert seen == set(PROPENSITIES)


def test_without_replay_the_batch_is_all_arms(tmp_path):
    config = load_config(overrides=["train.replay=0", "train.batch_size=8"])
    batch = draw_batch(config, streams_for(config, tmp_path), random.Random(0))
    assert all(arm is not None for arm, _, _ in batch) and not (tmp_path / "replay.json").exists()


def test_the_organisms_default_run_replays_and_the_real_model_config_does_not():
    assert load_config().train.replay > 0
    assert load_config("default_lora").train.replay == 0
