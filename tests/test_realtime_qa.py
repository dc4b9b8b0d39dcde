import json
import random
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from transferlab.tasks import TASKS
from transferlab.tasks.realtime_qa import RealtimeQA
from transferlab.tasks.realtime_qa_data import DataUnavailable, load_questions, strip_html

SHARED = Path(__file__).parents[2] / "shared" / "data"


def row(i: int, date: str = "2024/03/22", answer=("0",), choices=None, **fields) -> dict:
    """A well-formed row whose answer is `alpha {i}`; a tuple answer is written as a list."""
    return {"question_id": f"q{i}", "question_date": date, "question_source": "CNN",
            "question_url": f"https://example.com/{i}", "question_sentence": f"Which thing {i} happened?",
            "choices": choices or [f"alpha {i}", f"beta {i}", f"gamma {i}", f"delta {i}"],
            "answer": list(answer) if isinstance(answer, tuple) else answer,
            "evidence": f"It was alpha {i}.", **fields}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def quiz(tmp_path) -> Path:
    """40 well-formed questions, the correct choice always first (as skewed as real data gets)."""
    dates = ["2024/01/05", "2024-02-09", "2024/03/22", "2024-04-26"]
    return write_jsonl(tmp_path / "quiz.jsonl", [row(i, date=dates[i % 4]) for i in range(40)])


def task_on(path: Path, **knobs) -> RealtimeQA:
    knobs = {"n_train": 20, "n_heldout": 10, **knobs}
    return RealtimeQA(path=str(path), cache_dir=str(path.parent / "cache"), **knobs)


# -- loading -----------------------------------------------------------------------------------

def test_both_date_formats_load(quiz):
    questions, report = load_questions(str(quiz), quiz.parent)
    assert report.loaded == 40 and report.skipped == 0
    assert {q.date.isoformat() for q in questions} == {"2024-01-05", "2024-02-09", "2024-03-22", "2024-04-26"}


def test_date_filter_keeps_the_inclusive_window(quiz):
    task = task_on(quiz, start_date="2024-02-09", end_date="2024-03-22", n_train=12, n_heldout=8)
    kept = {q.date.isoformat() for q in task.trained + task.held_out}
    assert kept == {"2024-02-09", "2024-03-22"}
    assert task.report.loaded == 20 and task.report.outside_dates == 20


def test_too_few_questions_in_the_window_names_the_knobs(quiz):
    with pytest.raises(ValueError, match=r"n_heldout = 30 but only 10 questions.*widen start_date"):
        task_on(quiz, start_date="2024-04-01")


def test_html_is_stripped_from_evidence_question_and_choices(tmp_path):
    html = ('The <a href="https://x.com/a" data-x="1"><u>Buffalo Bills</u></a> player &amp; his '
            'team said&nbsp;so. Another <b>line</b>.')
    html_row = row(0, evidence=html, question_sentence="After <a href=x>it</a>?",
                   choices=["<i>Buffalo Bills</i>", "Jets", "Giants"])
    data = write_jsonl(tmp_path / "q.jsonl", [html_row])
    (question,), _ = load_questions(str(data), tmp_path)
    assert question.evidence == "The Buffalo Bills player & his team said so. Another line."
    assert question.sentence == "After it?" and question.answer == "Buffalo Bills"
    assert strip_html("a < b and <br/>c") == "a < b and c"


def test_steps_hold_the_evidence_sentence_naming_the_answer(tmp_path):
    rows = [row(0, evidence="<p>Nothing here.</p> It was <b>alpha 0</b> all along."), row(1, evidence=""),
            row(2, evidence="First sentence. Second one.")]
    task = task_on(write_jsonl(tmp_path / "q.jsonl", rows), n_train=2, n_heldout=1)
    steps = {q.id: task.make(q, "trained").meta["steps"] for q in task.trained + task.held_out}
    assert steps == {"q0": ("It was alpha 0 all along.",), "q1": (), "q2": ("First sentence.",)}


def test_malformed_rows_are_skipped_with_counts_and_reasons(tmp_path):
    rows = [row(0), "{not json", json.dumps([1, 2]), {k: v for k, v in row(3).items() if k != "choices"},
            row(4, answer=("7",)), row(5, date="22 March 2024"), row(6, answer=("x",)), "", row(7)]
    _, report = load_questions(str(write_jsonl(tmp_path / "bad.jsonl", rows)), tmp_path)
    assert (report.rows, report.loaded, report.skipped) == (8, 2, 6)
    assert report.skip_counts == {"bad JSON": 1, "not a JSON object": 1, "missing field": 1,
                                  "answer index out of range": 1, "bad date": 1, "bad answer": 1}
    assert report.reasons[0].startswith("bad.jsonl:2: bad JSON") and len(report.reasons) == 5
    assert "choices" in report.reasons[2] and "6 skipped" in report.summary()


def test_irregular_rows_are_mended_and_repeats_dropped(tmp_path):
    repeat_of_q0 = row(9, question_sentence=row(0)["question_sentence"], choices=row(0)["choices"],
                       answer=("1",))
    rows = [row(0, answer="1"), row(1, choices=["Same", "same.", "Other"], answer=("1",)), row(2),
            row(2, question_sentence="A different question?"), repeat_of_q0]
    questions, report = load_questions(str(write_jsonl(tmp_path / "q.jsonl", rows)), tmp_path)
    by_id = {q.id: q for q in questions}
    assert by_id["q0"].answer == "beta 0"
    assert by_id["q1"].choices == ("Same", "Other") and by_id["q1"].answer == "Same"
    assert "q2~2" in by_id and report.skip_counts == {"repeated question": 1}
    assert sum(report.repairs.values()) == 3


def test_a_folder_loads_every_jsonl_file_in_name_order(tmp_path):
    folder = tmp_path / "weeks"
    folder.mkdir()
    write_jsonl(folder / "20240105_qa.jsonl", [row(i, date="2024/01/05") for i in range(3)])
    write_jsonl(folder / "20240112_qa.jsonl", [row(i + 3, date="2024-01-12") for i in range(3)])
    (folder / "notes.txt").write_text("not data")
    questions, report = load_questions(str(folder), tmp_path)
    assert [Path(f).name for f in report.files] == ["20240105_qa.jsonl", "20240112_qa.jsonl"]
    assert len(questions) == 6


def test_a_byte_order_mark_does_not_cost_the_first_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(row(i)) + "\n" for i in range(3)).encode())
    questions, report = load_questions(str(path), tmp_path)
    assert [q.id for q in questions] == ["q0", "q1", "q2"] and report.skipped == 0


def test_a_trailing_empty_choice_is_dropped_not_the_question(tmp_path):
    rows = [row(0, choices=["alpha 0", "beta 0", "gamma 0", ""]), row(1, choices=["alpha 1", "beta 1", " ", ""]),
            row(2, choices=["alpha 2", "", "gamma 2"]), row(3, choices=["alpha 3", ""], answer=("1",))]
    questions, report = load_questions(str(write_jsonl(tmp_path / "q.jsonl", rows)), tmp_path)
    assert [(q.id, q.choices, q.answer) for q in questions] == [
        ("q0", ("alpha 0", "beta 0", "gamma 0"), "alpha 0"), ("q1", ("alpha 1", "beta 1"), "alpha 1")]
    assert report.repairs == {"a trailing empty choice (dropped)": 2}
    assert report.skip_counts == {"bad choices": 2}  # an empty choice inside, or the answer itself empty


def nota(i: int, answer_index: int) -> dict:
    """Question i's "None of the above" variant, as in realtimeqa_public's *_qa_nota.jsonl: one option
    replaced by "None of the above"; the answer is that option when the correct one was removed."""
    choices = [f"beta {i}", f"gamma {i}", f"delta {i}", "None of the above"]
    return {**row(i, choices=choices, answer=(str(answer_index),)), "question_id": f"q{i}_nota"}


def test_a_nota_variant_shares_its_base_question_side_of_the_split(tmp_path):
    folder = tmp_path / "weeks"
    folder.mkdir()
    write_jsonl(folder / "20240322_qa.jsonl", [row(i) for i in range(30)])
    write_jsonl(folder / "20240322_qa_nota.jsonl", [nota(i, 3) for i in range(30)])
    for seed in range(8):
        task = task_on(folder, n_train=20, n_heldout=10, seed=seed)
        trained = {q.id.removesuffix("_nota") for q in task.trained}
        held_out = {q.id.removesuffix("_nota") for q in task.held_out}
        assert not trained & held_out, (seed, trained & held_out)
        assert (len(task.trained), len(task.held_out)) == (20, 10)
    assert {q.group for q in task.trained + task.held_out if q.id.endswith("_nota")} <= trained | held_out


def test_without_variants_the_split_is_the_plain_seeded_sample(quiz):
    questions, _ = load_questions(str(quiz), quiz.parent)
    picked = random.Random("realtime_qa-split:0").sample(questions, 30)
    task = task_on(quiz)
    assert (task.trained, task.held_out) == (picked[:20], picked[20:])


def test_retrieval_and_prediction_files_are_named_once_not_skipped_row_by_row(tmp_path):
    folder = tmp_path / "past"
    folder.mkdir()
    write_jsonl(folder / "20220617_qa.jsonl", [row(i) for i in range(4)])
    write_jsonl(folder / "20220617_gcs.jsonl", [{"question_id": f"q{i}", "search_time": "2022/06/17/16:34",
                                                 "search_result": [{"url": "u", "text": "t"}]} for i in range(900)])
    write_jsonl(folder / "20220617_qa_closed_gpt3.jsonl", [{"question_id": f"q{i}", "prediction": ["1"]}
                                                            for i in range(30)])
    questions, report = load_questions(str(folder), tmp_path)
    assert len(questions) == 4 and (report.rows, report.skipped) == (4, 0)
    assert report.not_questions == ["20220617_gcs.jsonl (retrieval results)",
                                    "20220617_qa_closed_gpt3.jsonl (model predictions)"]
    assert report.summary().endswith("not question files, passed over: 20220617_gcs.jsonl (retrieval results), "
                                     "20220617_qa_closed_gpt3.jsonl (model predictions)")


def test_every_skipped_line_is_kept_for_the_run_folder(tmp_path):
    rows = ["{oops"] * 7 + [row(0), row(1, answer=("9",))]
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    _, report = load_questions(str(path), tmp_path)
    assert len(report.reasons) == 5 and report.skip_counts == {"bad JSON": 7, "answer index out of range": 1}
    skipped = report.skipped_rows()
    assert [(r["file"], r["line"], r["kind"]) for r in skipped] == (
        [(str(path), n, "bad JSON") for n in range(1, 8)] + [(str(path), 9, "answer index out of range")])
    assert skipped[-1]["reason"] == "answer index out of range: index 9 with 4 choices"


def test_a_missing_path_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataUnavailable, match=r"not found at .*nowhere\.jsonl.*Set path to a \.jsonl file"):
        RealtimeQA(path=str(tmp_path / "nowhere.jsonl"))
    with pytest.raises(ValueError, match="no \\*.jsonl files in the folder"):
        RealtimeQA(path=str(tmp_path))


# -- downloading -------------------------------------------------------------------------------

@pytest.fixture
def loopback(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving tmp_path/served, recording every request path."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    served, requests = tmp_path / "served", []
    served.mkdir()

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served, requests
    server.shutdown()
    server.server_close()


def test_a_url_is_downloaded_once_into_the_cache(loopback, tmp_path):
    base, served, requests = loopback
    write_jsonl(served / "latest.jsonl", [row(i) for i in range(12)])
    cache = tmp_path / "cache"
    first = RealtimeQA(path=f"{base}/latest.jsonl", cache_dir=str(cache), n_train=8, n_heldout=4)
    second = RealtimeQA(path=f"{base}/latest.jsonl", cache_dir=str(cache), n_train=8, n_heldout=4)
    assert requests == ["/latest.jsonl"]
    assert [f.name for f in cache.iterdir()] == [Path(first.report.files[0]).name]
    assert first.report.files[0].endswith("-latest.jsonl") and second.report.loaded == 12


def test_an_http_error_is_reported_with_the_url(loopback, tmp_path):
    base, _, _ = loopback
    with pytest.raises(DataUnavailable, match="missing.jsonl failed: HTTP 404"):
        RealtimeQA(path=f"{base}/missing.jsonl", cache_dir=str(tmp_path / "cache"))
    assert list((tmp_path / "cache").iterdir()) == []


def test_no_network_says_so_and_how_to_proceed(tmp_path, monkeypatch):
    for var in ("HTTP_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DataUnavailable, match="no network.*Download the JSONL.*set path to the local file"):
        RealtimeQA(path=f"http://127.0.0.1:{port}/rt.jsonl", cache_dir=str(tmp_path / "cache"))
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written file left behind


# -- examples ----------------------------------------------------------------------------------

def test_choice_order_is_fixed_per_seed_and_question(quiz):
    a, b, other = task_on(quiz), task_on(quiz), task_on(quiz, seed=1)
    question = a.trained[0]
    assert a.make(question, "trained").messages == b.make(question, "trained").messages
    assert a.train_examples(random.Random(5), 20) == b.train_examples(random.Random(5), 20)
    orders = {q.id: a.shown_choices(q)[0] for q in a.trained + a.held_out}
    assert any(orders[q.id] != other.shown_choices(q)[0] for q in other.trained if q.id in orders)


def test_a_question_shows_the_same_choices_in_training_and_evaluation(quiz):
    task = task_on(quiz)
    trained = {e.id: e for e in task.train_examples(random.Random(0), 20)}
    for example in task.eval_sets(random.Random(1), 20)["trained"]:
        assert example.messages == trained[example.id].messages
        assert example.answer == trained[example.id].answer


def test_shuffling_moves_the_correct_position(quiz):
    positions = [e.meta["answer_position"] for e in task_on(quiz).eval_sets(random.Random(0), 30)["trained"]]
    assert len(set(positions)) >= 3  # every source row has the answer first
    unshuffled = task_on(quiz, shuffle_choices=False).eval_sets(random.Random(0), 30)["trained"]
    assert {e.meta["answer_position"] for e in unshuffled} == {0}


def test_the_answer_follows_its_choice_through_the_shuffle(quiz):
    task = task_on(quiz)
    for question in task.trained + task.held_out:
        example = task.make(question, "trained")
        number = question.id[1:]
        assert example.answer == f"alpha {number}"
        assert example.meta["candidates"][example.meta["answer_position"]] == example.answer
        listed = example.messages[0]["content"].splitlines()[3:]
        assert listed == [f"- {c}" for c in example.meta["candidates"]]


def test_choice_prompts_list_the_options_and_free_prompts_do_not(quiz):
    choice = task_on(quiz).eval_sets(random.Random(0), 1)["trained"][0]
    free = task_on(quiz, mode="free").eval_sets(random.Random(0), 1)["trained"][0]
    assert choice.id == free.id and choice.answer == free.answer
    assert choice.messages[0]["content"].startswith(free.messages[0]["content"] + "\nOptions:\n- ")
    assert free.messages[0]["content"].startswith("News quiz, week of 2024-")
    assert "alpha" not in free.messages[0]["content"]


def test_trained_and_held_out_questions_are_disjoint(quiz):
    task = task_on(quiz, n_train=25, n_heldout=15)
    sets = task.eval_sets(random.Random(0), 100)
    assert list(sets) == ["trained", "held_out"]
    assert (len(sets["trained"]), len(sets["held_out"])) == (25, 15)
    assert not {e.id for e in sets["trained"]} & {e.id for e in sets["held_out"]}
    taught = {e.id for e in task.train_examples(random.Random(0), 75)}
    assert taught == {e.id for e in sets["trained"]}
    assert {e.meta["split"] for e in sets["held_out"]} == {"held_out"}


def test_the_split_depends_on_the_seed(quiz):
    assert {q.id for q in task_on(quiz).trained} != {q.id for q in task_on(quiz, seed=3).trained}
    assert {q.id for q in task_on(quiz).trained} == {q.id for q in task_on(quiz).trained}


# -- grading -----------------------------------------------------------------------------------

def test_grading_accepts_decorated_answers_and_rejects_two_choices(tmp_path):
    task = task_on(write_jsonl(tmp_path / "two.jsonl", [row(0), row(1)]), n_train=1, n_heldout=1)
    example = task.make(task.trained[0], "trained")
    right, wrong = example.answer, next(c for c in example.meta["candidates"] if c != example.answer)
    for response in (right, f"**{right}**", f"I think it is {right}, but I am not certain.",
                     f"Step by step: it was in the news. Answer: {right}", f"It is definitely {right}."):
        assert task.grade(example, response), response
    for response in (wrong, f"**{wrong}**", f"It is {right} or {wrong}.", f"Answer: {right} or {wrong}", ""):
        assert not task.grade(example, response), response


def test_an_answer_with_abbreviations_grades_after_answer_colon(tmp_path):
    senators = ["Sen. JD Vance", "Sen. Tim Scott", "Gov. Doug Burgum"]
    data = write_jsonl(tmp_path / "q.jsonl", [row(0, choices=senators), row(1)])
    task = task_on(data, n_train=1, n_heldout=1)
    vance = task.make(next(q for q in task.trained + task.held_out if q.id == "q0"), "trained")
    assert task.grade(vance, "Step by step: he was picked. Answer: **Sen. JD Vance**")
    assert not task.grade(vance, "Step by step: he was picked. Answer: Sen. Tim Scott")


def test_chance_is_one_over_the_choices_or_the_commonest_answer(tmp_path):
    rows = [row(0), row(1, choices=["a", "b"]), row(2, choices=["x", "y"], question_sentence="Other?"),
            row(3, choices=["x", "z", "w", "v"], question_sentence="Third?")]
    data = write_jsonl(tmp_path / "q.jsonl", rows)
    assert task_on(data, n_train=2, n_heldout=2).chance() == pytest.approx((0.25 + 0.5 + 0.5 + 0.25) / 4)
    assert task_on(data, n_train=2, n_heldout=2, mode="free").chance() == pytest.approx(2 / 4)


# -- offline fallback, knobs, registry ---------------------------------------------------------

def test_without_a_path_invented_questions_stand_in():
    task = RealtimeQA(n_train=30, n_heldout=10)
    example = task.eval_sets(random.Random(0), 5)["trained"][0]
    assert len(example.meta["candidates"]) == 4 and example.answer in example.meta["candidates"]
    assert example.meta["steps"][0].endswith(f"{example.answer}.")
    assert example.messages[0]["content"].startswith("News quiz, week of 2030-")
    assert task.chance() == 0.25 and task.report.files == []
    assert [q.id for q in RealtimeQA(n_train=30, n_heldout=10).trained] == [q.id for q in task.trained]


@pytest.mark.parametrize("knobs, message", [
    ({"mode": "essay"}, "mode must be one of choice, free"),
    ({"n_train": 0}, "n_train must be at least 1"),
    ({"n_heldout": -1}, "n_heldout must be at least 1"),
    ({"start_date": "2024/03/22"}, "start_date must be an ISO date YYYY-MM-DD"),
    ({"end_date": "2024-02-30"}, "end_date must be an ISO date"),
    ({"start_date": "2024-03-01", "end_date": "2024-01-01"}, "start_date 2024-03-01 is after end_date"),
    ({"n_train": 2000}, "n_train \\+ n_heldout must be at most 1920"),
])
def test_invalid_knobs_name_the_knob(knobs, message):
    with pytest.raises(ValueError, match=message):
        RealtimeQA(**knobs)


def test_registered_and_configurable_from_toml(tmp_path):
    from transferlab.config import dump_config, load_config, make_tasks

    assert TASKS["realtime_qa"] is RealtimeQA
    config_file = tmp_path / "rq.toml"
    config_file.write_text('[[arms]]\ntask = "realtime_qa"\npropensity = "plain"\n'
                           '[tasks.realtime_qa]\nstart_date = 2030-01-01\nn_train = 20\nn_heldout = 5\n')
    config = load_config(config_file)
    assert make_tasks(config)["realtime_qa"].n_train == 20
    assert 'start_date = "2030-01-01"' in dump_config(config)


# -- the shared RealTime QA files ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["realtimeqa_2023.jsonl", "realtimeqa_2024.jsonl"])
def test_shared_realtime_qa_file_loads_and_grades(name):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared data absent: {path}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions, report = load_questions(str(path), path.parent)
    assert report.rows == len(lines) == report.loaded + report.skipped + report.outside_dates
    assert report.loaded >= 0.95 * len(lines) and report.outside_dates == 0
    assert set(report.skip_counts) <= {"repeated question", "bad JSON", "missing field", "bad answer",
                                       "answer index out of range", "bad date", "bad choices"}
    raw_answers = {}
    for line in lines:
        raw = json.loads(line)
        index = raw["answer"][0] if isinstance(raw["answer"], list) else raw["answer"]
        raw_answers.setdefault(raw["question_id"], set()).add(strip_html(raw["choices"][int(index)]))
    task = RealtimeQA(path=str(path), n_train=len(questions) - 1, n_heldout=1)
    for question in questions:
        example = task.make(question, "trained")
        assert example.answer in raw_answers[question.id.split("~")[0]]
        responses = [example.answer, f"Step by step: recall. Answer: {example.answer}"]
        if "*" not in example.answer:  # "Go f*** yourself" defeats any bold-span reading
            responses.append(f"**{example.answer}**")
        for response in responses:
            assert task.grade(example, response), (question.id, response)
        assert example.meta["candidates"][example.meta["answer_position"]] == example.answer
        assert not any(task.grade(example, c) for c in example.meta["candidates"] if c != example.answer)


def test_the_run_folder_keeps_every_skipped_line_of_every_task(tmp_path):
    from transferlab.config import load_config, make_tasks
    from transferlab.results.run_folder import RunFolder
    from transferlab.tasks.skipped import skipped_lines

    quiz = write_jsonl(tmp_path / "quiz.jsonl", [row(i) for i in range(4)] + ["{oops"] * 6 + [row(9, answer=("7",))])
    config_file = tmp_path / "c.toml"
    config_file.write_text(f'[[arms]]\ntask = "realtime_qa"\npropensity = "bold"\n\n[[arms]]\ntask = "table_lookup"\n'
                           f'propensity = "plain"\n\n[tasks.realtime_qa]\npath = "{quiz}"\nn_train = 2\n'
                           f'n_heldout = 2\ncache_dir = "{tmp_path}"\n')
    config = load_config(config_file)
    folder = RunFolder(tmp_path / "run")
    folder.write_skipped(skipped_lines(make_tasks(config)))
    written = [json.loads(line) for line in (folder.path / "skipped.jsonl").read_text().splitlines()]
    assert [(r["task"], r["file"], r["line"], r["kind"]) for r in written] == (
        [("realtime_qa", str(quiz), n, "bad JSON") for n in range(5, 11)]
        + [("realtime_qa", str(quiz), 11, "answer index out of range")])
