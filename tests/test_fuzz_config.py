"""Fuzzing the config loader: any TOML file, any `--set` override, any seed ends in a validated config
or a ConfigError that names what is wrong, never a traceback from inside tomllib or pydantic.

A config that validates must also be usable: it reloads from its own resolved TOML unchanged, and its
tasks make examples (so no bad knob slips through validation to fail later, inside a run).
"""

from __future__ import annotations

import math
import random
import string
import tempfile
import tomllib
from pathlib import Path

import httpx
import pytest
import tomli_w
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from transferlab.config import (
    ConfigError,
    ExperimentConfig,
    default_config_text,
    dump_config,
    load_config,
    make_tasks,
    task_knobs,
)
from transferlab.propensities import PAIRS, PROPENSITIES
from transferlab.tasks import TASKS
from transferlab.train.schedule import lr_at

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE = tomllib.loads(default_config_text())


def known_keys(model: type[BaseModel] = ExperimentConfig, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key a config may set, read off the pydantic models and the task dataclasses."""
    keys = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys += known_keys(kind, (*prefix, name))
        elif name == "tasks":
            keys += [(*prefix, "tasks", task, knob) for task in TASKS for knob in task_knobs(task)]
        else:
            keys.append((*prefix, name))
    return keys


KEYS = known_keys()
WORDS = sorted(TASKS) + sorted(PROPENSITIES) + sorted(PAIRS) + ["hf", "organism", "free", "choice", "uci", "san",
                                                                  "template", "llm", "heuristic", "nope", ""]
scalars = st.one_of(
    st.integers(), st.integers(-3, 300), st.floats(), st.booleans(), st.sampled_from(WORDS),
    st.text(max_size=12), st.dates(), st.datetimes(), st.times(),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
arms = st.lists(st.fixed_dictionaries(
    {"task": st.sampled_from(sorted(TASKS) + ["checkers"]), "propensity": st.sampled_from(sorted(PROPENSITIES))},
    optional={"weight": st.floats(), "colour": values}), max_size=3)
key_paths = st.one_of(st.sampled_from(KEYS), st.lists(st.sampled_from(["", "model", "train", "x", "tasks", "arms"])
                                                      | st.text(max_size=6), min_size=1, max_size=3).map(tuple))
mutations = st.lists(st.one_of(
    st.tuples(st.just("set"), key_paths, values),
    st.tuples(st.just("set"), st.just(("arms",)), arms),
    st.tuples(st.just("delete"), key_paths, st.none()),
), max_size=4)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder for the fuzzed files; a URL in a data path fails at once, as it does offline."""
    def offline(*args, **kwargs):
        raise httpx.ConnectError("no network in the fuzz tests")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx, "stream", offline)
        patch.chdir(tmp_path_factory.mktemp("cwd"))  # a relative data path finds nothing by accident
        yield tmp_path_factory.mktemp("configs")


def write(folder: Path, content: str | bytes) -> Path:
    fd, name = tempfile.mkstemp(dir=folder, suffix=".toml")
    with open(fd, "wb") as handle:
        handle.write(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
    return Path(name)


def mutate(data: dict, changes: list) -> dict:
    data = tomllib.loads(tomli_w.dumps(data))  # a deep copy
    for action, path, value in changes:
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if action == "set":
            node[path[-1]] = value
        else:
            node.pop(path[-1], None)
    return data


def assert_named(err: ConfigError, path: Path | None = None) -> None:
    """A config error says where: the file, the `--set`, or one `key: problem` line per mistake."""
    message = str(err)
    first, *rest = message.splitlines()
    assert isinstance(err, ValueError) and first.strip(), message
    if first == "invalid config:":
        assert rest and all(line.startswith("  ") and ": " in line and line[2:].split(": ")[0] for line in rest), \
            message
    else:
        assert first.startswith(("config error in [tasks.", "--set ")) or (path and str(path) in first), message


def load_or_refuse(path=None, overrides=(), seed=None) -> ExperimentConfig | None:
    try:
        config = load_config(path, overrides=list(overrides), seed=seed)
    except ConfigError as err:
        assert_named(err, path)
        event("refused: " + str(err).splitlines()[-1].split(":")[0][:30])
        return None
    event("validated")
    return config


def assert_usable(config: ExperimentConfig, folder: Path) -> None:
    """A validated config reloads from its resolved TOML unchanged, training can draw its arms and
    schedule its learning rate, and its tasks make examples.

    Compared as resolved TOML: a default tuple knob (chess `themes = ()`) comes back as a list."""
    resolved = dump_config(config)
    assert dump_config(load_config(write(folder, resolved))) == resolved
    rng = random.Random(0)
    rng.choices(range(len(config.arms)), [arm.weight for arm in config.arms], k=2)  # as training draws arms
    train = config.train
    assert all(math.isfinite(lr_at(step, train.steps, train.lr, train.warmup)) for step in (0, train.steps))
    for name, task in make_tasks(config).items():
        if name == "chess":
            continue  # with no file its puzzles are generated by a mate search: seconds, not fuzz speed
        assert task.train_examples(rng, 2) and all(task.eval_sets(rng, 2).values())


# -- TOML files ----------------------------------------------------------------------------------

@FUZZ
@given(changes=mutations, seed=st.none() | st.integers())
def test_a_mutated_config_validates_or_names_the_problem(workdir, changes, seed):
    data = mutate(BASE, changes)
    try:
        text = tomli_w.dumps(data)
    except (TypeError, ValueError):
        assume(False)  # a value TOML cannot spell, so no config file can hold it
    path = write(workdir, text)
    config = load_or_refuse(path, seed=seed)
    if config is not None:
        if "invented_facts" in config.task_names() and config.tasks["invented_facts"]["mode"] == "choice":
            # see test_invented_facts_option_count_is_checked_before_a_run, which fails until it is
            assume(2 <= config.tasks["invented_facts"]["n_options"] <= 240)
        assert_usable(config, workdir)


@FUZZ
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
       | st.lists(st.sampled_from(tomli_w.dumps(BASE).splitlines() + ["[[arms]]", "[train", "x = ", "= 1", "a = ["]),
                  max_size=30).map("\n".join))
def test_arbitrary_text_is_a_config_or_a_named_error(workdir, text):
    path = write(workdir, text)
    config = load_or_refuse(path)
    if config is not None:
        assert_usable(config, workdir)


@st.composite
def spliced_config(draw) -> bytes:
    """The default config's bytes with up to 8 random bytes spliced in: often still a valid config."""
    data = tomli_w.dumps(BASE).encode()
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(max_size=8)) + data[at:]


@FUZZ
@given(content=st.binary(max_size=64) | spliced_config())
def test_arbitrary_bytes_are_a_config_or_a_named_error(workdir, content):
    """Bytes that are not UTF-8 are refused naming the first bad byte; UTF-8 that is not TOML is refused
    with TOML's own reason; TOML without arms names the missing key; anything that loads is usable."""
    path = write(workdir, content)
    try:
        text = content.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() reads it
    except UnicodeDecodeError as err:
        event("refused: not UTF-8")
        with pytest.raises(ConfigError) as refused:
            load_config(path)
        assert str(refused.value) == f"{path} is not a text file (byte {err.start} is not UTF-8); a config is TOML text"
        return
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        event("refused: not TOML")
        with pytest.raises(ConfigError) as refused:
            load_config(path)
        assert str(refused.value) == f"{path} is not valid TOML: {err}"
        return
    config = load_or_refuse(path)
    if "arms" not in data:
        assert config is None  # nothing to train: refused, and load_or_refuse checked the message names it
        with pytest.raises(ConfigError, match=r"(?m)^  arms: Field required$"):
            load_config(path)
    elif config is not None:
        assert [(a.task, a.weight) for a in config.arms] == [(a["task"], a.get("weight", 1.0)) for a in data["arms"]]
        assert_usable(config, workdir)


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe\x00name = 1", "is not a text file (byte 0 is not UTF-8)"),
    ("a = " + "[" * 5000, "nested too deeply"),
    ("a = " + "{b = " * 3000, "nested too deeply"),
    ('[[arms]]\ntask = "table_lookup"\npropensity = "bold"\nweight = inf\n', "arms.0.weight: inf is not a finite"),
    ('"" = 1\n[[arms]]\ntask = "table_lookup"\npropensity = "bold"\n', '"": Extra inputs are not permitted'),
])
def test_files_no_toml_reader_survives_are_named(tmp_path, content, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_config(write(tmp_path, content))


def test_a_folder_given_as_the_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"cannot read the config {tmp_path}: Is a directory"):
        load_config(tmp_path)


def test_invented_facts_option_count_is_checked_before_a_run():
    """n_options is unchecked: 0 or 241+ validate, then `random.sample` fails inside the run."""
    for n in (0, 241):
        try:
            config = load_config(None, overrides=['tasks.invented_facts.mode="choice"',
                                                  f"tasks.invented_facts.n_options={n}"])
        except ConfigError as err:
            assert "n_options" in str(err)
            continue
        make_tasks(config)["invented_facts"].train_examples(random.Random(0), 2)  # ValueError today


# -- --set overrides -----------------------------------------------------------------------------

def toml_literal(value) -> str:
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip() if not isinstance(value, dict) else "{}"


override_values = st.one_of(
    scalars.filter(lambda v: not (isinstance(v, float) and math.isnan(v))).map(toml_literal), st.text(max_size=12),
    st.sampled_from(['"bold"', "[1, 2]", "{task = 'chess'}", "-0", "0x10", "'", '"']),
    st.sampled_from(["inf", "nan", "-inf", "1e400"]),
)
overrides = st.lists(st.one_of(
    st.tuples(st.sampled_from([".".join(k) for k in KEYS] + ["arms.0.task", "tasks", "model", "x.y", ""]),
              override_values).map("=".join),
    st.text(alphabet=string.printable, max_size=20),
), max_size=4)


@FUZZ
@given(assignments=overrides)
def test_any_override_validates_or_names_the_problem(workdir, assignments):
    config = load_or_refuse(None, assignments)
    if config is not None:
        if "invented_facts" in config.task_names() and config.tasks["invented_facts"]["mode"] == "choice":
            assume(2 <= config.tasks["invented_facts"]["n_options"] <= 240)  # see the n_options test above
        assert_usable(config, workdir)


@pytest.mark.parametrize("assignment, words", [
    ("=3", "--set '=3': the key has an empty part"),
    ("train..steps=3", "the key has an empty part"),
    ("arms.0.task=chess", "--set arms.0.task: 'arms' is not a table"),
    ("train.lr=inf", "train.lr: inf is not a finite number"),
    ("arms=[{task='table_lookup', propensity='bold', weight=nan}]", "arms.0.weight: nan is not a finite"),
    ("seed=1e400", "seed: inf is not a finite number"),  # TOML reads 1e400 as inf
])
def test_overrides_that_cannot_apply_are_named(assignment, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, overrides=[assignment])


def test_the_grammar_reaches_every_key_and_a_valid_config():
    """The strategies are not vacuous: they name every section's keys, and the base config is valid."""
    assert {k[0] for k in KEYS} >= {"name", "seed", "pair", "model", "tasks", "arms", "train", "eval", "llm"}
    assert ("tasks", "chess", "path") in KEYS and ("train", "lr") in KEYS
    assert load_config(None).arms
