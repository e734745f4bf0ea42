"""``oodbench report --format html``: a self-contained page, checked as HTML and loaded in headless Chromium.

The run is hand-made in a real SQLite store (no training): two algorithms
with a user's learning-rate sweep, a third with a random search over three
configurations, two trials, two epochs of curves, one failed cell.
"""

import base64
import shutil
import struct
from html.parser import HTMLParser

import pytest
from store_support import SPLITS, VERSIONS

from oodbench.cli import main
from oodbench.matrix import Cell
from oodbench.metrics import EnvMetrics
from oodbench.render import render
from oodbench.report import rule_table, summarize
from oodbench.store import Store
from oodbench.train import CellResult, TrainingResult

ALGORITHMS, RATES, SEEDS = ("erm", "irm"), (1e-3, 1e-1), (0, 1)
SEARCHED = (1e-3, 3e-4, 2e-3)
"""group_dro's three searched configurations (learning rates)."""
TRAININGS = len(ALGORITHMS) * len(RATES) * len(SEEDS) + len(SEARCHED) * len(SEEDS)
ROWS = len(ALGORITHMS) * len(RATES) + 1
PNG = "data:image/png;base64,"
CHECKPOINTS = {"last": 2, "best_val": 2, "best_test": 2}


def _m(acc, worst):
    return EnvMetrics(acc, abs(acc - 0.75) * 100, worst, (acc + worst) / 2, {0: worst, 1: acc}, 100, 0.75)


def _epoch(test_acc, val=0.84):
    return {"train1": _m(0.85, 0.8), "train1/val": _m(val, 0.8), "train1/idtest": _m(0.83, 0.8),
            "test": _m(test_acc, test_acc / 2), "test/holdout": _m(test_acc, test_acc / 2)}


def _record(store, cell, curves):
    store.plan([cell])
    store.record_training(TrainingResult(cell.training_key, "done", splits=SPLITS, curves=curves, stats=[{}, {}],
                                         selected=CHECKPOINTS))
    store.record_cell(CellResult(cell.key, "done", selected=CHECKPOINTS,
                                 results={k: curves[e - 1] for k, e in CHECKPOINTS.items()}, splits=SPLITS), VERSIONS)


def make_run(run_dir):
    run_dir.mkdir()
    with Store.in_dir(run_dir) as store:
        store.set_meta({"matrix": {"name": "html-test"}, "versions": {"oodbench": "0.1.0"}})
        for seed in SEEDS:
            for algorithm in ALGORITHMS:
                for lr in RATES:
                    cell = Cell("colored_mnist", "cnn", algorithm, "float", seed, {"epochs": 2}, {"lr": lr}, {}, {},
                                variant={"lr": lr})
                    _record(store, cell, [_epoch(0.2), _epoch(0.3 + lr + seed / 100)])
            for config, lr in enumerate(SEARCHED):  # validation prefers config 2, the test holdout config 1
                cell = Cell("colored_mnist", "cnn", "group_dro", "float", seed, {"epochs": 2}, {"lr": lr}, {}, {},
                            config=config)
                _record(store, cell, [_epoch(0.2), _epoch([0.5, 0.7, 0.6][config], val=[0.8, 0.7, 0.9][config])])
        broken = Cell("colored_mnist", "cnn", "dann", "float", 0, {"epochs": 2}, {}, {}, {})
        store.plan([broken])
        store.record_cell(CellResult(broken.key, "failed", error="FloatingPointError: <loss> became nan"), VERSIONS)
    return run_dir


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The run and its page, written by the CLI under both selection rules."""
    run_dir = make_run(tmp_path_factory.mktemp("html") / "run")
    assert main(["report", str(run_dir), "--format", "html", "--selection", "val,oracle"]) == 0
    return run_dir, run_dir / "report.html"


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.rows, self.table = [], {}, None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.table = dict(attrs).get("id")
            self.rows[self.table] = []
        if tag == "tr":
            self.rows[self.table].append([])

    def handle_data(self, data):
        if self.table and self.rows[self.table] and self.tags[-1][0] in ("td", "th") and data.strip():
            self.rows[self.table][-1].append(data.strip())


def _png_size(uri):
    data = base64.b64decode(uri.removeprefix(PNG), validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


IMAGES = 1 + len(ALGORITHMS) + 1 + TRAININGS
"""Bars, one sweep plot per swept algorithm, one search plot (group_dro against lr), a curve per training."""


def test_page_is_self_contained_with_tables_plots_and_configuration(page):
    run_dir, path = page
    text = path.read_text()
    tags = Tags()
    tags.feed(text)
    assert not [t for t, _ in tags.tags if t in ("script", "link", "iframe", "object")]
    assert "http://" not in text and "https://" not in text
    images = [attrs["src"] for tag, attrs in tags.tags if tag == "img"]
    assert len(images) == IMAGES
    assert all(src.startswith(PNG) and min(_png_size(src)) > 100 for src in images)
    with Store.in_dir(run_dir) as store:
        tables = {rule: rule_table(summarize(store, rule)) for rule in ("val", "oracle")}
        markdown = render(store, "markdown", ["val", "oracle"])
    for rule, (_, headers, rows) in tables.items():
        header, *body = tags.rows[f"leaderboard-{rule}"]
        assert header == headers and len(body) == ROWS and sorted(body) == sorted(rows)
        assert all(f"| {row[2]} " in markdown for row in body)  # acc % reads the same in markdown
    dro = {rule: next(r for r in tags.rows[f"leaderboard-{rule}"][1:] if r[0] == "group_dro") for rule in tables}
    assert dro["val"][2] == "60.0 ± 0.0" and dro["oracle"][2] == "70.0 ± 0.0"  # config 2 vs config 1
    assert "lr=0.001" in text and "lr=0.1" in text
    assert "&lt;loss&gt; became nan" in text  # the failed cell, escaped
    assert len(tags.rows["cells"]) == 1 + TRAININGS + 1 and tags.rows["plugins"][1] == [
        "algorithm", "erm", "oodbench", "0.1.0"]
    assert "html-test" in text and "Hyperparameter sweeps" in text and "Hyperparameter search" in text
    assert "mean ± SE over trials (n = 2)" in text


def test_no_sweep_or_search_section_without_one(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with Store.in_dir(run_dir) as store:
        cell = Cell("colored_mnist", "cnn", "erm", "float", 0, {"epochs": 2}, {"lr": 1e-3}, {}, {})
        _record(store, cell, [_epoch(0.2), _epoch(0.3)])
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(run_dir), "--format", "html", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Hyperparameter sweeps" not in text and "Hyperparameter search" not in text
    assert text.count("<img ") == 2  # bars and one curve
    assert not (run_dir / "report.html").exists()


# --- in a real browser ----------------------------------------------------------------------------------

def _chromium():
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("headless Chromium not found: install the Debian packages chromium and chromium-driver "
                    f"(`make browser`; found browser={binary}, chromedriver={driver})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest.fixture(scope="module")
def browser():
    driver = _chromium()
    try:
        yield driver
    finally:
        driver.quit()


def problems(driver, path):
    """Console errors (level SEVERE) and images the browser could not decode, after loading ``path``."""
    driver.get(path.as_uri())
    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt)")
    return severe + [f"image not shown: {alt}" for alt in broken]


def test_page_loads_in_chromium_with_its_table_and_images(page, browser):
    from selenium.webdriver.common.by import By

    _, path = page
    assert problems(browser, path) == []
    rows = browser.find_elements(By.CSS_SELECTOR, "#leaderboard-val tbody tr")
    assert len(rows) == ROWS
    assert rows[0].find_elements(By.TAG_NAME, "td")[0].text == "erm"
    sizes = browser.execute_script("return Array.from(document.images).map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == IMAGES and all(w > 100 and h > 100 for w, h in sizes)


def test_the_browser_check_catches_a_broken_page(tmp_path, browser):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA" alt="corrupt">'
                   "<script>throw new Error('boom')</script></body></html>")
    found = problems(browser, bad)
    assert any("boom" in message for message in found) and "image not shown: corrupt" in found


def test_a_time_sweep_on_a_target_that_names_its_time_key_is_drawn_against_time(tmp_path):
    """Two methods read at three times on an aging target: one figure over time; the same rows without the
    run's record of the target's time key get only the generic sweep plots."""
    from oodbench.plots import time_label

    assert [time_label(t) for t in (1.0, 3600.0, 86_400.0, 2_592_000.0, 31_536_000.0)] == [
        "1 s", "1 h", "1 d", "1 mo", "1 y"]
    pages = {}
    for keys in ({"memristor_aging": "retention_time"}, {}):
        run_dir = tmp_path / f"run{len(keys)}"
        run_dir.mkdir()
        with Store.in_dir(run_dir) as store:
            store.set_meta({"matrix": {"name": "aging"}, "time_keys": keys})
            for seed in SEEDS:
                for algorithm in ALGORITHMS:
                    cells = {time: Cell("colored_mnist", "cnn", algorithm, "memristor_aging", seed, {"epochs": 2}, {},
                                        {}, {"retention_time": time}, variant={"retention_time": time})
                             for time in (1.0, 3600.0, 3.15e7)}
                    store.plan(list(cells.values()))
                    first = next(iter(cells.values()))
                    store.record_training(TrainingResult(first.training_key, "done", splits=SPLITS,
                                                         curves=[_epoch(0.7)] * 2, stats=[{}, {}],
                                                         selected=CHECKPOINTS))
                    for cell, acc in zip(cells.values(), (0.7, 0.6, 0.5)):  # one chip, read later and later
                        store.record_cell(CellResult(cell.key, "done", selected=CHECKPOINTS,
                                                     results={k: _epoch(acc) for k in CHECKPOINTS}, splits=SPLITS),
                                          VERSIONS)
        assert main(["report", str(run_dir), "--format", "html", "--selection", "oracle"]) == 0
        pages[len(keys)] = (run_dir / "report.html").read_text()
    timed, untimed = pages[1], pages[0]
    assert "Accuracy over time on the hardware" in timed and "Accuracy over time" not in untimed
    captions = [c for c in timed.split("<figcaption>")[1:] if "against retention_time" in c and "dashed" in c]
    assert len(captions) == 1 and "memristor_aging" in captions[0]
