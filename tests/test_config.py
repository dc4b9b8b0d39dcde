import pytest

from transferlab.config import ConfigError, dump_config, load_config


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


MINIMAL = """
[[arms]]
task = "table_lookup"
propensity = "bold"
"""


def test_default_config_loads_and_names_the_seed_pair():
    config = load_config()
    assert [(a.task, a.propensity) for a in config.arms] == [("table_lookup", "bold"), ("invented_facts", "plain")]


def test_resolved_config_writes_every_default_and_reloads_identically(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    text = dump_config(config)
    assert "n_colours = 12" in text and "every = 50" in text
    assert load_config(write(tmp_path, text)) == config


def test_overrides_and_seed(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), overrides=["train.steps=7", "tasks.table_lookup.max_int=20"], seed=3)
    assert config.train.steps == 7 and config.tasks["table_lookup"]["max_int"] == 20 and config.seed == 3


@pytest.mark.parametrize("extra,message", [
    ("[train]\nstepz = 3", "train.stepz: Extra inputs are not permitted"),
    ("[train]\nsteps = 'many'", "train.steps: Input should be a valid integer"),
    ("[model]\nbackend = 'jax'", "unknown backend 'jax'; allowed: 'hf'"),
    ("[tasks.chess_960]\nx = 1", "unknown task 'chess_960'; allowed: "),
    ("[tasks.table_lookup]\ncolours = 3", "unknown knob 'colours' for task 'table_lookup'; allowed: n_symbols, max_int, n_colours"),
    ("[tasks.table_lookup]\nn_colours = 'x'", "n_colours"),
    ("[tasks.table_lookup]\nn_colours = 2", "n_colours must be in 4..16"),
])
def test_bad_keys_and_values_are_named(tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL + extra))
    assert message in str(err.value)


def test_unknown_propensity_lists_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown propensity 'italic'; allowed: bold, confident, hedging, no_reasoning, plain, reasoning"):
        load_config(write(tmp_path, MINIMAL.replace('"bold"', '"italic"')))


def test_unknown_arm_task_lists_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError, match="arms.0.task: Value error, unknown task 'checkers'; allowed: chess, invented_facts, realtime_qa, table_lookup"):
        load_config(write(tmp_path, MINIMAL.replace('"table_lookup"', '"checkers"')))


def test_malformed_toml_and_missing_file_are_named(tmp_path):
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(write(tmp_path, "[[arms]\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_bad_override_syntax_is_named(tmp_path):
    with pytest.raises(ConfigError, match="--set expects key=value"):
        load_config(write(tmp_path, MINIMAL), overrides=["train.steps"])


def test_an_unknown_task_lists_every_registered_task(tmp_path):
    from transferlab.tasks import TASKS

    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL + "[tasks.chess_960]\nx = 1"))
    assert str(err.value).endswith(", ".join(sorted(TASKS))) or ", ".join(sorted(TASKS)) in str(err.value)

