"""`transferlab report`: one self-contained HTML page of a run or a sweep, checked as text and in a real
headless Chromium (the page's own JavaScript builds the sample browser, so only a browser shows it works)."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from markupsafe import escape

from transferlab.cli import main
from transferlab.config import dump_config, load_config
from transferlab.report import write_report
from transferlab.report.samples import script_json

MICRO_RUN = ["train.steps=2", "train.batch_size=4", "eval.every=2", "eval.n=4", "eval.n_boot=20",
             "tasks.invented_facts.n_facts=8", "model.threads=1"]  # fmt: skip
PAIRS = ("bold_plain", "hedging_confident")
EVIL = "</script><script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">"


# -- folders to report on ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep_template(micro_organism, tmp_path_factory):
    """Two real micro runs under `cells/`, as a sweep leaves them before it aggregates."""
    from transferlab.train.loop import run_experiment

    root = tmp_path_factory.mktemp("sweep")
    for pair in PAIRS:
        config = load_config(None, overrides=[f"model.name={micro_organism}", f"pair={pair}", *MICRO_RUN])
        run_experiment(config, root / "cells" / pair, quiet=True)
    return root


@pytest.fixture
def sweep(sweep_template, tmp_path):
    """A fresh copy per test, so a report (which may aggregate) never changes another test's folder."""
    return Path(shutil.copytree(sweep_template, tmp_path / "sweep"))


def sample_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip()]


def synthetic_run(folder: Path, n_per_condition: int = 2, response: str = "**red**") -> Path:
    """A run folder written by hand: the default config and graded samples, no model needed."""
    config = load_config(None)
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(dump_config(config))
    rows = []
    for step in (0, 10):
        for arm in config.arms:
            for prompted in ("bold", "plain"):
                for i in range(n_per_condition):
                    rows.append({
                        "step": step, "seed": 0, "task": arm.task, "eval_set": "fresh", "trained": arm.propensity,
                        "prompted": prompted, "example_id": f"{arm.task}-{i}",
                        "prompt": [{"role": "system", "content": "Table 1: α=1"},
                                   {"role": "user", "content": f"Question {i} about {arm.task}?"}],
                        "answer": "red", "response": response, "correct": i % 2 == 0, "adherent": i % 3 != 0,
                    })  # fmt: skip
    (folder / "samples.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return folder


def page_samples(html: str) -> dict:
    blob = re.search(r'<script type="application/json" id="sample-data">(.*?)</script>', html, re.DOTALL)
    return json.loads(blob.group(1))


# -- the page as text --------------------------------------------------------------------------


def test_script_json_cannot_close_the_script_tag():
    text = script_json({"response": EVIL, "and": "a & b > c <!--"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"response": EVIL, "and": "a & b > c <!--"}


def test_markup_in_a_sample_stays_text(tmp_path):
    run = synthetic_run(tmp_path / "run", response=EVIL)
    html = write_report(run).read_text()
    assert EVIL not in html
    assert "<script>window.pwned" not in html and "<img src=x" not in html
    assert html.count("<script") == 2  # the JSON data and the browser's own script, nothing injected
    samples = page_samples(html)
    assert {row[samples["columns"].index("response")] for row in samples["rows"]} == {EVIL}


def test_run_report_holds_config_figures_tables_and_every_sample(sweep):
    run = sweep / "cells" / "bold_plain"
    html = write_report(run).read_text()
    assert str(escape((run / "config.toml").read_text())) in html
    assert html.count('src="data:image/png;base64,') == len(list((run / "figures").glob("*.png"))) >= 3
    assert "metrics.csv" in html and "gaps.csv" in html and html.count('class="dataframe data"') == 2
    samples = page_samples(html)
    assert len(samples["rows"]) == len(sample_lines(run)) > 0
    assert "cell" not in samples["columns"]
    assert samples["rows"][0][samples["columns"].index("prompt")] == sample_lines(run)[0]["prompt"][-1]["content"]
    assert 'id="notes"' not in html  # nothing is missing


def test_sweep_report_aggregates_first_and_shows_every_cell(sweep):
    assert not (sweep / "tables").exists()
    html = write_report(sweep).read_text()
    tables = sorted(p.name for p in (sweep / "tables").glob("*.csv"))
    assert tables == ["final_gap.csv", "peak_gap.csv", "summary.csv"]
    assert (sweep / "figures" / "gap_grid.png").is_file()
    assert 'alt="figures/gap_grid.png"' in html
    for name in tables:
        assert f"tables/{name}" in html
    for pair in PAIRS:
        assert f"<summary>cells/{pair} &mdash; done</summary>" in html
        assert f'alt="cells/{pair}/figures/gap.png"' in html
    samples = page_samples(html)
    cells = {row[samples["columns"].index("cell")] for row in samples["rows"]}
    assert cells == {f"cells/{pair}" for pair in PAIRS}
    assert len(samples["rows"]) == sum(len(sample_lines(sweep / "cells" / pair)) for pair in PAIRS)
    assert '<select data-filter="cell">' in html


def test_sweep_report_takes_cell_states_from_the_manifest(sweep):
    cells = [{"id": pair, "folder": f"cells/{pair}", "state": "done", "values": {"pair": pair}, "wall_s": 12.0,
              "error": None} for pair in PAIRS]  # fmt: skip
    cells += [{"id": "waiting", "folder": "cells/waiting", "state": "pending", "values": {"pair": "x"}},
              {"id": "broken", "folder": "cells/broken", "state": "failed", "error": "<b>out of memory</b>"}]
    manifest = {"sweep": {"name": "demo", "file": "demo.toml", "axes": ["pair"]}, "created_at": "then",
                "updated_at": "now", "cells": cells}
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    html = write_report(sweep).read_text()
    assert "sweep <strong>demo</strong>" in html and "2 done &middot; 1 pending &middot; 1 failed" in html
    assert "<td>waiting</td><td>pending</td>" in html and "pair=bold_plain" in html
    assert "&lt;b&gt;out of memory&lt;/b&gt;" in html
    assert "waiting: no run folder yet (pending)" in html


def test_partial_run_folder_says_what_is_missing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dump_config(load_config(None)))
    (run / "samples.jsonl").write_text("")
    html = write_report(run).read_text()
    notes = html.split('id="notes"')[1].split("</section>")[0]
    for missing in ("samples.jsonl (empty)", "metrics.csv", "gaps.csv", "figures/*.png"):
        assert missing in notes
    assert "No figures" in html and "No tables" in html and page_samples(html)["rows"] == []


def test_a_half_written_sample_line_is_left_out_and_counted(tmp_path):
    run = synthetic_run(tmp_path / "run")
    with (run / "samples.jsonl").open("a") as f:
        f.write('{"step": 20, "task": "tab')
    html = write_report(run).read_text()
    assert len(page_samples(html)["rows"]) == 16
    assert "1 line(s) of samples.jsonl were not valid JSON" in html
    # results/ leaves the torn last line out too, so the figures are still drawn
    assert "could not draw the figures" not in html
    assert html.count('src="data:image/png;base64,') == 3


def test_a_run_without_figures_gets_them_drawn_from_its_samples(tmp_path):
    run = synthetic_run(tmp_path / "run")
    html = write_report(run).read_text()
    assert sorted(p.name for p in (run / "figures").glob("*.png")) == ["accuracy.png", "adherence.png", "gap.png"]
    assert html.count('src="data:image/png;base64,') == 3


def test_cli_writes_the_report_where_asked(tmp_path):
    run = synthetic_run(tmp_path / "run")
    out = tmp_path / "elsewhere" / "page.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert out.is_file() and not (run / "report.html").exists()
    assert [p.name for p in out.parent.iterdir()] == ["page.html"]  # no temporary file left behind
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2


# -- the page in a real browser ----------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--hide-scrollbars"]  # fmt: skip


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium; installed here when missing and we are root (the CI image runs as root)."""
    found = shutil.which("chromium")
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.run(install, env=env, capture_output=True, timeout=900, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300, check=False)
            subprocess.run(install, env=env, capture_output=True, timeout=900, check=False)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium is not installed and `apt-get install -y chromium` was not possible here")
    return found


def browse(chromium: str, url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def dumped_count(dom: str) -> dict[str, str]:
    tag = re.search(r'<p id="sample-count"[^>]*>', dom).group(0)
    return dict(re.findall(r'data-(\w+)="([^"]*)"', tag))


def test_chromium_renders_figures_tables_and_the_sample_browser(chromium, sweep, tmp_path):
    page = write_report(sweep)
    dom = browse(chromium, page.as_uri(), tmp_path, "--dump-dom").stdout
    assert dom.count('src="data:image/png;base64,') == 1 + 4 * len(PAIRS)  # the grid and each cell's own
    assert dom.count('class="dataframe data"') == 3
    total = sum(len(sample_lines(sweep / "cells" / pair)) for pair in PAIRS)
    count = dumped_count(dom)
    assert count["total"] == count["matching"] == count["shown"] == str(total)
    assert dom.count('<tr class="sample-row">') == total  # rows built by the page's script
    assert "matching samples" in dom
    screenshot = tmp_path / "report.png"
    browse(chromium, page.as_uri(), tmp_path, f"--screenshot={screenshot}", "--window-size=1400,2000")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 30_000


def test_chromium_applies_the_filters_in_the_address(chromium, sweep, tmp_path):
    page = write_report(sweep)
    rows = [r for pair in PAIRS for r in sample_lines(sweep / "cells" / pair)]
    expected = [r for r in rows if r["task"] == "invented_facts" and r["prompted"] == "plain" and r["step"] == 2]
    dom = browse(chromium, page.as_uri() + "#task=invented_facts&prompted=plain&step=2", tmp_path,
                 "--dump-dom").stdout
    assert 0 < len(expected) < len(rows)
    assert dumped_count(dom)["matching"] == str(len(expected))
    assert dom.count('<tr class="sample-row">') == len(expected)


class DevTools:
    """The Chrome DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-separated
    JSON): enough to open a page and evaluate JavaScript in it, with no websocket library."""

    def __init__(self, chromium: str, profile: Path):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        # the protocol's fixed descriptors; bash, since dash cannot name a descriptor above 9
        wire_fds = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        self.process = subprocess.Popen(
            ["bash", "-c", wire_fds, chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._next_id, self._buffer, self.session = 0, b"", None

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                if not select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    raise TimeoutError(f"no answer to {method} in {timeout} s")
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise ConnectionError("chromium closed the pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the new tab starts on a blank page that is already complete
            try:
                if self.js("document.readyState === 'complete' && location.href") == url:
                    return
            except RuntimeError:  # evaluated while the page was being replaced
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{url} did not load in 30 s")

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.session = None
            self.call("Browser.close", timeout=10)
        except (OSError, TimeoutError, ConnectionError, RuntimeError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def test_filters_search_and_pages_answer_the_user_in_chromium(chromium, tmp_path):
    run = synthetic_run(tmp_path / "run", n_per_condition=60, response=EVIL)  # 480 samples: three pages
    page = write_report(run)
    browser = DevTools(chromium, tmp_path / "profile")
    try:
        browser.open(page.as_uri())
        count = "Object.assign({}, document.getElementById('sample-count').dataset)"
        rows = "document.querySelectorAll('tr.sample-row').length"
        assert browser.js(count) == {"total": "480", "matching": "480", "shown": "200", "page": "1"}
        assert browser.js(rows) == 200

        browser.js("document.getElementById('sample-next').click()")
        browser.js("document.getElementById('sample-next').click()")
        assert browser.js(count)["page"] == "3" and browser.js(rows) == 80
        assert browser.js("document.getElementById('sample-next').disabled") is True

        choose = ("(function (name, value) { var s = document.querySelector('select[data-filter=' + name + ']');"
                  " s.value = value; s.dispatchEvent(new Event('change')); })")
        browser.js(f"{choose}('task', 'table_lookup')")
        assert browser.js(count)["matching"] == "240" and browser.js(count)["page"] == "1"
        browser.js(f"{choose}('correct', 'true')")
        assert browser.js(count)["matching"] == "120"
        assert browser.js("location.hash") == "#task=table_lookup&correct=true"

        search = "document.getElementById('sample-search')"
        browser.js(f"{search}.value = 'QUESTION 7 '; {search}.dispatchEvent(new Event('input'))")
        assert browser.js(count)["matching"] == "0"  # question 7 is never correct (odd numbers are wrong)
        browser.js(f"{search}.value = 'question 8 '; {search}.dispatchEvent(new Event('input'))")
        assert browser.js(count)["matching"] == "4"  # 2 steps x 2 prompts
        assert browser.js(rows) == 4

        browser.js("document.getElementById('sample-reset').click()")
        assert browser.js(count)["matching"] == "480"
        # the model's "<script>" and "<img onerror>" were shown as text, never run
        assert browser.js("window.pwned === undefined") is True
        assert browser.js("document.querySelector('td.col-response').textContent") == EVIL
    finally:
        browser.close()
