"""The API docs and the audit console in a real headless chromium, as a user sees them.

A real uvicorn serves the real app (embedded mode, real sandboxes, API keys on). The audit log
holds a few hours of a simulated training run's history (written through the real SQLite
store before the service starts, since past times cannot be produced otherwise) plus items
checked through `/v1/check` during the test. Run with AZR_VERIFY_UPDATE_SCREENSHOTS=1 to
rewrite docs/console.png and docs/console-item.png for the README.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.models import Verdict, Violation
from azr_verify.service.stores.audit.records import AuditRecord, program_hash
from azr_verify.service.stores.audit.sqlite import DB_NAME, SqliteAuditStore

from .browser import chromium, requested_urls, require_browser
from .servers import REPO, ApiServer, api_server, wait_until

KEY_NAME, KEY = "trainer-run-42", "k-console-test-5d1f"
RUN = uuid.uuid4().hex[:8]
UNSAFE_ID = f"unsafe-{RUN}"
UNSAFE_PROGRAM = ("def f(path):\n"
                  "    # list what the grader can see\n"
                  "    import os\n"
                  "    names = sorted(os.listdir(path))\n"
                  "    return names[:3]")
RAISING_ID = f"raises-{RUN}"
SEARCH_WORD = f"needle{RUN}"


def _history(now: float) -> list[AuditRecord]:
    """Six hours of a training run's rejections: mostly runtime errors and unsafe imports,
    a burst of timeouts, a trickle of the rest."""
    rng = random.Random(7)
    shapes: list[tuple[Verdict, str, str | None, str | None, list[Violation]]] = [
        (Verdict.RUNTIME_ERROR, "def f(xs):\n    return xs[len(xs)]", "IndexError",
         "list index out of range", []),
        (Verdict.RUNTIME_ERROR, "def f(a, b):\n    return a // b", "ZeroDivisionError",
         "integer division or modulo by zero", []),
        (Verdict.UNSAFE, "import subprocess\ndef f(cmd):\n    return subprocess.run(cmd)",
         None, "rejected by policy azr: subprocess",
         [Violation(rule="import_denied", name="subprocess", line=1)]),
        (Verdict.UNSAFE, "def f(x):\n    return x.__class__.__mro__[1].__subclasses__()", None,
         "rejected by policy azr: __class__, __mro__, __subclasses__",
         [Violation(rule="dunder_attribute", name="__class__", line=2)]),
        (Verdict.TIMEOUT, "def f(n):\n    while n:\n        n += 1\n    return n", None,
         "exceeded the 5 s limit", []),
        (Verdict.NONDETERMINISTIC, "def f(xs):\n    return list(set(xs))", None,
         "run 1 gave ['b', 'a']; run 2 gave ['a', 'b']", []),
        (Verdict.NOT_LITERAL, "def f(n):\n    return (k for k in range(n))", None,
         "returned a generator", []),
        (Verdict.SYNTAX_ERROR, "def f(x)\n    return x", None,
         "program: expected ':' (line 1)", []),
        (Verdict.MEMORY_LIMIT, "def f(n):\n    return [0] * 10 ** n", "MemoryError",
         "over the 256 MB limit", []),
    ]
    weights = [30, 18, 16, 8, 9, 6, 5, 5, 3]
    records = []
    for k in range(1500):
        stamp = now - 6 * 3600 + k * (6 * 3600 / 1500) + rng.random() * 5
        shape = rng.choices(shapes, weights)[0]
        if 2.5 * 3600 < now - stamp < 3 * 3600 and rng.random() < 0.6:
            shape = shapes[4]  # a burst of timeouts half-way through the run
        verdict, program, error_type, error, violations = shape
        records.append(AuditRecord(
            time=stamp, program_hash=program_hash(program), program=program,
            input=str(rng.randint(0, 99)), entry="f", policy="azr", verdict=verdict,
            violations=violations, error_type=error_type, error=error, api_key_name=KEY_NAME,
            item_id=f"step{k // 16}-{k % 16}", meta={"step": k // 16, "role": "proposer"}))
    return records


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    require_browser()
    data = tmp_path_factory.mktemp("console-data")
    store = SqliteAuditStore(data / DB_NAME, retention=1_000_000)
    store.record(_history(time.time()))
    store.close()
    settings = Settings(data_dir=data, api_keys={KEY_NAME: KEY})
    with api_server(settings, engine) as running:
        items = [
            {"id": UNSAFE_ID, "program": UNSAFE_PROGRAM, "input": "'/'",
             "meta": {"step": 94, "role": "proposer", "note": SEARCH_WORD}},
            {"id": RAISING_ID, "program": f"def f(x):\n    # {SEARCH_WORD}\n    return 1 // x",
             "input": "0"},
        ]
        with running.client(headers={"Authorization": f"Bearer {KEY}"}) as client:
            response = client.post("/v1/check", json={"items": items})
        assert response.status_code == 200, response.text
        verdicts = [r["verdict"] for r in response.json()["results"]]
        assert verdicts == ["unsafe", "runtime_error"], response.text
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _wait_css(driver: Any, selector: str, timeout_s: float = 60) -> list[Any]:
    wait_until(lambda: bool(_by_css(driver, selector)), timeout_s, f"{selector!r} on the page",
               interval_s=0.1)
    return _by_css(driver, selector)


def _assert_all_local(urls: list[str], server: ApiServer) -> None:
    # Network requests only (chrome:// and data: are the browser's own or inline).
    network = [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:"))]
    assert any(u.startswith(server.url) for u in network)
    outside = [u for u in network if not u.startswith(server.url + "/")]
    assert not outside, f"the page requested other origins: {outside}"


def _sign_in(driver: Any, server: ApiServer) -> None:
    """Opens the console as a new visitor: the sign-in page first, then the list."""
    driver.get(f"{server.url}/console/login")  # the session cookie's path is /console
    driver.delete_all_cookies()
    driver.get(f"{server.url}/console")
    (key_field,) = _wait_css(driver, "input#key")
    assert "/console/login" in driver.current_url
    key_field.send_keys(KEY)
    _by_css(driver, "form button[type=submit]")[0].click()
    _wait_css(driver, "table#records tbody tr")


def _rows(driver: Any) -> list[dict[str, str]]:
    return [{"verdict": row.get_attribute("data-verdict"), "text": row.text,
             "href": row.get_attribute("data-href")}
            for row in _by_css(driver, "table#records tbody tr")]


def test_swagger_docs_list_the_operations_offline(server: ApiServer, browser: Any) -> None:
    requested_urls(browser)  # start the log afresh
    browser.get(f"{server.url}/docs")
    _wait_css(browser, ".opblock")
    page = browser.find_element("tag name", "body").text
    for path in ("/v1/check", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/audit", "/v1/info"):
        assert path in page
    # The API-key scheme gives the "Authorize" button; tags group the operations.
    assert _by_css(browser, "button.authorize")
    assert {"check", "jobs", "audit", "service"} <= {
        e.get_attribute("data-tag") for e in _by_css(browser, ".opblock-tag")}
    _assert_all_local(requested_urls(browser), server)


def test_redoc_renders_offline(server: ApiServer, browser: Any) -> None:
    requested_urls(browser)
    browser.get(f"{server.url}/redoc")
    wait_until(lambda: "Check a batch of triples" in browser.find_element(
        "tag name", "body").text, 60, "ReDoc to render the operations", interval_s=0.2)
    _assert_all_local(requested_urls(browser), server)


def test_console_shows_a_rejected_item_with_its_violation_marked(server: ApiServer,
                                                                browser: Any) -> None:
    requested_urls(browser)
    _sign_in(browser, server)
    rows = _rows(browser)
    assert len(rows) == 50  # a page; the rest is behind "Older"
    assert _by_css(browser, "a#older")
    (mine,) = [r for r in rows if UNSAFE_ID in r["text"]]
    assert mine["verdict"] == "unsafe" and "import_denied: os (line 3)" in mine["text"]
    # The chart: bars of several verdicts, with the legend's totals.
    assert len(_by_css(browser, "svg.chart rect.bar.v-unsafe")) > 10
    assert len(_by_css(browser, "svg.chart rect.bar.v-timeout")) > 3
    legend = _by_css(browser, ".legend")[0].text
    assert "runtime_error" in legend and "unsafe" in legend

    _by_css(browser, f"tr[data-href='{mine['href']}'] td.why")[0].click()
    _wait_css(browser, "table#program")
    marked = _by_css(browser, "table#program tr.violation")
    assert [row.get_attribute("id") for row in marked] == ["L3"]
    assert "import os" in marked[0].text and "import_denied: os" in marked[0].text
    assert _by_css(browser, "pre#input")[0].text == "'/'"
    assert "rejected by policy azr: os" in _by_css(browser, "#error")[0].text
    assert SEARCH_WORD in browser.find_element("tag name", "body").text  # the client's meta
    _assert_all_local(requested_urls(browser), server)


def test_console_filters_narrow_the_list(server: ApiServer, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    _sign_in(browser, server)
    Select(_by_css(browser, "select#f-verdict")[0]).select_by_value("runtime_error")

    def only(verdict: str) -> bool:
        rows = _rows(browser)
        return bool(rows) and {r["verdict"] for r in rows} == {verdict}

    # Choosing a verdict submits the form at once (no button press).
    wait_until(lambda: "verdict=runtime_error" in browser.current_url and
               only("runtime_error"), 30, "the verdict filter")
    rows = _rows(browser)
    assert any(RAISING_ID in r["text"] for r in rows)
    assert not any(UNSAFE_ID in r["text"] for r in rows)

    search = _by_css(browser, "input#f-q")[0]
    search.send_keys(SEARCH_WORD)
    search.submit()
    wait_until(lambda: f"q={SEARCH_WORD}" in browser.current_url and
               len(_rows(browser)) == 1, 30, "the search")
    rows = _rows(browser)
    assert RAISING_ID in rows[0]["text"]

    browser.get(f"{server.url}/console?rule=dunder_attribute")
    rows = _rows(browser)
    assert rows and all("dunder_attribute" in r["text"] for r in rows)


def _fetch(driver: Any, url: str) -> tuple[int, str]:
    """GET from the page, with its cookies: what a click on a download link receives."""
    status, text = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text().then(t => done([r.status, t])),"
        "                        e => done([0, String(e)]));", url)
    return int(status), str(text)


def test_export_link_downloads_what_the_filter_shows(server: ApiServer, browser: Any) -> None:
    _sign_in(browser, server)
    browser.get(f"{server.url}/console?verdict=unsafe&q={SEARCH_WORD}")
    link = _wait_css(browser, "a#export-jsonl")[0].get_attribute("href")
    assert link.startswith(f"{server.url}/console/export?")
    # Fetched by the page itself, with the browser's session: what a click would download.
    status, text = _fetch(browser, link)
    assert status == 200
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["item_id"] for r in records] == [UNSAFE_ID]
    assert records[0]["violations"][0] == {"rule": "import_denied", "name": "os", "line": 3}
    csv_link = _by_css(browser, "a#export-csv")[0].get_attribute("href")
    status, text = _fetch(browser, csv_link)
    assert status == 200 and text.startswith("id,time,time_utc,verdict")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["item_id"], r["verdict"], r["rules"]) for r in rows] == [
        (UNSAFE_ID, "unsafe", "import_denied")]
    assert rows[0]["program"] == UNSAFE_PROGRAM


def test_console_is_closed_without_a_key(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/console", "/console/items/1", "/console/export?format=jsonl"):
            response = client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/login?next=")
        wrong = client.post("/console/login", data={"key": "not-the-key", "next": "/console"})
        assert wrong.status_code == 401 and "not one of this service" in wrong.text
        assert "set-cookie" not in wrong.headers


def test_screenshot_of_the_console(server: ApiServer, tmp_path: Path) -> None:
    """The README's pictures, taken from the real pages."""
    with chromium(tmp_path / "profile", width=1280, height=940) as driver:
        _sign_in(driver, server)
        driver.get(f"{server.url}/console")
        _wait_css(driver, "svg.chart")
        list_png = tmp_path / "console.png"
        driver.save_screenshot(str(list_png))
        (unsafe,) = [r for r in _rows(driver) if UNSAFE_ID in r["text"]]
        driver.get(server.url + unsafe["href"])
        _wait_css(driver, "table#program")
        item_png = tmp_path / "console-item.png"
        driver.set_window_size(1280, 760)
        driver.save_screenshot(str(item_png))
    for png in (list_png, item_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("AZR_VERIFY_UPDATE_SCREENSHOTS") == "1":
            _save_small(png, REPO / "docs" / png.name)


def _save_small(source: Path, target: Path) -> None:
    """A palette PNG: a screenshot of flat colours loses nothing visible at a third the size."""
    try:
        from PIL import Image
    except ImportError:
        shutil.copyfile(source, target)
        return
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT,
                                      dither=Image.Dither.NONE).save(target, optimize=True)
