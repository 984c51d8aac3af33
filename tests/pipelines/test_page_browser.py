"""The page at ``GET /`` in a real browser: headless Chromium against a live server.

Selenium drives the system's Chromium through the system's chromedriver (both
named explicitly, so nothing is downloaded). The server is a real
``python -m pipelines.serve`` with API keys; the page's numbers are compared
with ``/v1/predict`` for the same battle. Set ``ARENA_PAGE_PNG=docs/page.png``
to also save the screenshot there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_serve import FAST_LIGHTGBM, ServerProcess

from features.battles import CLASSES
from models import PreferenceModel
from pipelines.make_demo_data import make_demo_battles

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium", reason="selenium is in the dev extra")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(
        f"needs Chromium at {CHROMIUM} and chromedriver at {CHROMEDRIVER} "
        "(Debian: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

KEY = "page-key-5c1e9a"
HOSTILE = (
    "<script>window.__ran = 1</script>"
    '<img src="x" onerror="window.__ran = 2"> is what I would write.'
)
BATTLE = {
    "id": "page",
    "prompt": "Write a Python function that reverses a string.",
    "response_a": HOSTILE,
    "response_b": "```python\ndef reverse(text):\n    return text[::-1]\n```\n\n"
    "- Slicing with step -1 walks backwards.",
}
TOP_K = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    frame = make_demo_battles(n_rows=400, seed=3)
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        boosters=("lightgbm",),
        booster_params={"lightgbm": FAST_LIGHTGBM},
        n_folds=2,
        seed=0,
    ).fit(frame)
    return model.save(tmp_path_factory.mktemp("page") / "model")


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    keys = tmp_path_factory.mktemp("page-keys") / "keys"
    keys.write_text(f"# page test\n{KEY}\n")
    log = tmp_path_factory.mktemp("page-log") / "server.log"
    process = ServerProcess(model_dir, log, "--api-key-file", str(keys)).wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = Options()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,1300",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=Service(executable_path=str(CHROMEDRIVER)), options=options
    )
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _open(driver, server, *, key: str | None = KEY) -> None:
    """The page as a tab that holds ``key`` (None: no key yet), whatever ran before.

    The tab keeps its key in sessionStorage, so without this a test would see
    what the test before it left: the suite runs in any order.
    """
    driver.get(f"{server.url}/")
    if key is None:
        driver.execute_script("sessionStorage.clear()")
    else:
        driver.execute_script(
            "sessionStorage.setItem('arena-preference.api-key', arguments[0])", key
        )
    driver.get(f"{server.url}/")


def _wait(driver, condition, timeout: float = 30.0):
    return WebDriverWait(driver, timeout).until(condition)


def _text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def _console_errors(driver) -> list[str]:
    """SEVERE browser-console lines, except the expected 401s before the key."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "401" not in entry["message"]
    ]


def test_page_asks_for_the_key_then_predicts_what_the_api_predicts(
    server, browser, tmp_path
):
    _open(browser, server, key=None)
    # Keys are on: the model's identity needs one, so the page asks for it.
    key_field = _wait(browser, ec.visibility_of_element_located((By.ID, "api-key")))
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "status"), "key"))
    assert "error" in browser.find_element(By.ID, "status").get_attribute("class")
    key_field.send_keys(KEY, Keys.TAB)  # "change" loads the model's identity
    ready = httpx.get(f"{server.url}/readyz").json()
    _wait(
        browser,
        ec.text_to_be_present_in_element((By.ID, "model-sha"), ready["model"]),
    )
    assert _text(browser, "model-profile")  # "unknown" without a training report

    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys(BATTLE["prompt"])
    browser.find_element(By.ID, "response-a").send_keys(BATTLE["response_a"])
    answer_b = browser.find_element(By.ID, "response-b")
    for number, line in enumerate(BATTLE["response_b"].split("\n")):
        if number:
            answer_b.send_keys(Keys.SHIFT, Keys.ENTER)
        answer_b.send_keys(line)
    top_k = browser.find_element(By.ID, "top-k")
    top_k.clear()
    top_k.send_keys(str(TOP_K))
    assert (
        browser.execute_script("return document.getElementById('response-b').value")
        == (BATTLE["response_b"])
    )
    # The keyboard: Ctrl+Enter in a text box predicts.
    answer_b.send_keys(Keys.CONTROL, Keys.ENTER)
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "status"), "Done"))

    api = httpx.post(
        f"{server.url}/v1/predict",
        json={"battles": [BATTLE], "explain": TOP_K},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()["predictions"][0]
    for name, suffix in zip(CLASSES, ("a", "b", "tie"), strict=True):
        shown = float(_text(browser, f"value-{suffix}"))
        assert shown == pytest.approx(api[name], abs=5e-4)
        bar = browser.find_element(By.ID, f"bar-{suffix}")
        width = bar.size["width"]
        track = bar.find_element(By.XPATH, "..").size["width"]
        assert width / track == pytest.approx(api[name], abs=0.01)

    reasons = browser.find_elements(By.CSS_SELECTOR, "#reasons li")
    explanation = api["explanation"]
    items = (
        explanation
        if isinstance(explanation, list)
        else (explanation or {}).get("features", [])
    )
    assert len(reasons) == max(1, len(items))
    for li, item in zip(reasons, items, strict=False):
        words = item.get("sentence") or item.get("concept") or item.get("feature")
        assert str(words) in li.text
        assert "weight" in li.text

    # The hostile answer is text: it did not run, and made no element.
    assert browser.execute_script("return window.__ran") is None
    assert browser.execute_script("return document.images.length") == 0
    assert browser.execute_script(
        "return document.querySelectorAll('script').length"
    ) == (1)
    assert (
        browser.execute_script("return document.getElementById('response-a').value")
        == HOSTILE
    )
    # The key stays in this tab only.
    assert browser.execute_script(
        "return sessionStorage.getItem('arena-preference.api-key')"
    ) == (KEY)
    assert browser.execute_script("return localStorage.length") == 0
    assert _console_errors(browser) == []  # no CSP violation, no script error

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ARENA_PAGE_PNG"):
        shutil.copyfile(shot, os.environ["ARENA_PAGE_PNG"])


def test_an_example_battle_predicts_with_the_button(server, browser):
    _open(browser, server)  # the key comes back from sessionStorage
    Select(browser.find_element(By.ID, "example")).select_by_index(1)
    assert browser.find_element(By.ID, "prompt").get_attribute("value")
    browser.find_element(By.ID, "predict").click()
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "status"), "Done"))
    values = [float(_text(browser, f"value-{s}")) for s in ("a", "b", "tie")]
    assert sum(values) == pytest.approx(1.0, abs=2e-3)


def test_a_wrong_key_shows_the_servers_message(server, browser):
    _open(browser, server)
    key_field = _wait(browser, ec.visibility_of_element_located((By.ID, "api-key")))
    key_field.clear()
    key_field.send_keys("not-the-key")
    Select(browser.find_element(By.ID, "example")).select_by_index(2)
    browser.find_element(By.ID, "predict").click()
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "status"), "not one"))
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    browser.execute_script(
        "sessionStorage.setItem('arena-preference.api-key', arguments[0])", KEY
    )


def test_every_field_has_a_label_and_results_are_announced(server, browser):
    _open(browser, server)
    for field in browser.find_elements(By.CSS_SELECTOR, "input, textarea, select"):
        labels = browser.find_elements(
            By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']"
        )
        assert labels and labels[0].text.strip()
    assert browser.find_element(By.ID, "status").get_attribute("aria-live")
    assert browser.find_element(By.ID, "output").get_attribute("aria-live")
    # Tab walks the form in reading order, ending on the button.
    browser.execute_script("document.getElementById('example').focus()")
    order = []
    for _ in range(6):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        order.append(browser.switch_to.active_element.get_attribute("id"))
        outline = browser.execute_script(
            "const s = getComputedStyle(document.activeElement);"
            "return [s.outlineStyle, s.outlineWidth];"
        )
        assert outline[0] != "none" and outline[1] != "0px", order[-1]  # visible
    assert order == ["api-key", "top-k", "prompt", "response-a", "response-b"] + [
        "predict"
    ]


def test_narrow_screen_stacks_the_answers_without_sideways_scrolling(server, browser):
    browser.set_window_size(380, 900)
    try:
        _open(browser, server)
        a = browser.find_element(By.ID, "response-a").rect
        b = browser.find_element(By.ID, "response-b").rect
        assert b["y"] >= a["y"] + a["height"]  # one above the other
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0
    finally:
        browser.set_window_size(1200, 1300)


def test_the_page_tolerates_a_missing_or_old_explanation(server, browser):
    """The page's renderer with both explanation shapes and none at all."""
    _open(browser, server)
    # The page exposes nothing globally; render through a stubbed fetch instead.
    cases = {
        "new": [
            {"concept": "length", "toward": "A", "weight": 0.4, "sentence": "<b>x</b>"}
        ],
        "old": {"class": "winner_model_a", "features": [{"feature": "f1"}]},
        "none": None,
    }
    for name, explanation in cases.items():
        prediction = {
            "id": "page",
            "winner_model_a": 0.5,
            "winner_model_b": 0.3,
            "winner_tie": 0.2,
            "explanation": explanation,
        }
        body = json.dumps({"model": "m", "predictions": [prediction], "repairs": []})
        browser.execute_script(
            "const body = arguments[0]; window.fetch = async () => new Response("
            "body, {status: 200, headers: {'Content-Type': 'application/json'}});",
            body,
        )
        Select(browser.find_element(By.ID, "example")).select_by_index(3)
        browser.find_element(By.ID, "predict").click()
        _wait(browser, ec.text_to_be_present_in_element((By.ID, "status"), "Done"))
        reasons = browser.find_elements(By.CSS_SELECTOR, "#reasons li")
        assert len(reasons) == 1, name
        if name == "new":
            assert reasons[0].text.startswith("<b>x</b>")
            assert "toward A" in reasons[0].text
            assert browser.find_elements(By.CSS_SELECTOR, "#reasons b") == []
        elif name == "old":
            assert reasons[0].text.startswith("f1")
        else:
            assert "No reasons" in reasons[0].text
        browser.execute_script("document.getElementById('status').textContent = '';")
