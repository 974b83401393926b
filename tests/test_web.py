"""The consultation page at `/`: its assets, and a full click-through in a real headless Chromium.

The browser tests drive Debian's `chromium` (/usr/bin/chromium) with Playwright; they skip when either is
missing. Set DIAGNOSTICIAN_SCREENSHOTS=DIR to also save the screenshots there (docs/ holds the README's).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from diagnostician.engine import NOTICE
from diagnostician.knowledge.schema import load_pack
from diagnostician.web import STATIC_DIR

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def test_page_and_assets_are_served_from_the_package(server) -> None:
    r = httpx.get(server.url + "/", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Decision support, not a diagnosis" in r.text and NOTICE in r.text
    for asset, kind in (("app.js", "javascript"), ("app.css", "css")):
        a = httpx.get(f"{server.url}/static/{asset}", timeout=10)
        assert a.status_code == 200 and kind in a.headers["content-type"]
    assert httpx.get(server.url + "/static/nope.js", timeout=10).status_code == 404
    # No CDN or other network fetch: every asset is local to the package.
    for f in STATIC_DIR.iterdir():
        assert not re.search(r"(src|href)=\"(https?:)?//", f.read_text()), f
        assert "https://" not in f.read_text() and "http://" not in f.read_text(), f
    assert "/" not in httpx.get(server.url + "/openapi.json", timeout=10).json()["paths"]


# ---------------------------------------------------------------- real browser



@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'): browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: browser tests skipped")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, tmp_path) -> Iterator[Any]:
    # A phone-sized viewport: the page must work there.
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    ctx.close()


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    out = os.environ.get("DIAGNOSTICIAN_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / name), full_page=True)


def _red_flag_findings() -> set[str]:
    """Findings that raise a danger sign on their own when answered yes."""
    return {rf.when[0][0] for rf in load_pack("ddxplus").red_flags if len(rf.when) == 1 and not rf.when[0][1]}


def _settled(page: Any, prev_qid: str | None) -> str:
    """Wait until the page shows a new question or the summary; return 'ask' or 'summary'."""
    page.wait_for_function(
        """prev => document.body.dataset.busy !== '1' && (!document.getElementById('summary').hidden ||
              (!document.getElementById('ask').hidden && document.getElementById('ask').dataset.qid !== prev))""",
        arg=prev_qid or "",
    )
    return "summary" if page.is_visible("#summary") else "ask"


def test_full_consultation_click_through(server, page, tmp_path) -> None:
    flags = _red_flag_findings()
    page.goto(server.url + "/")
    assert page.is_visible("#notice") and "decision support" in page.inner_text("#notice").lower()
    assert not page.is_visible("#banner")

    # First screen: age, sex, main complaint (from the common list, after trying the search box).
    page.wait_for_selector("#c-E_201")
    page.fill("#complaint-search", "cough")
    page.wait_for_selector("#complaint-results label.choice")
    page.get_by_label("Age (years)").fill("54")
    page.check("#sex-M")
    page.check("#c-E_201")
    page.click("#start-btn")
    assert _settled(page, None) == "ask"

    # The differential is hidden by default (patient-facing) and shown by the toggle.
    assert not page.is_visible("#ddx") and page.get_attribute("#ddx-toggle", "aria-expanded") == "false"
    page.click("#ddx-toggle")
    page.wait_for_selector("#ddx-list li")
    assert page.get_attribute("#ddx-toggle", "aria-expanded") == "true"

    seen: list[str] = []
    types: set[str] = set()
    codes: list[str] = []
    red_flag_shown = went_back = keyboard_used = False
    qid = page.get_attribute("#ask", "data-qid")
    for n in range(100):
        assert page.is_visible("#notice")
        if n:  # (the first question's focus went to the differential toggle, clicked above)
            assert page.evaluate("document.activeElement.id") == "qtext", "focus moves to each new question"
        finding, kind = page.get_attribute("#ask", "data-finding"), page.get_attribute("#ask", "data-type")
        types.add(kind)
        seen.append(page.inner_text("#qtext"))
        codes.append(finding)
        if n == 1 and not went_back:
            # Back: the previous question comes again.
            page.click("#back-btn")
            assert _settled(page, qid) == "ask"
            assert page.inner_text("#qtext") == seen[-2]
            went_back = True
            seen.pop()
            qid = page.get_attribute("#ask", "data-qid")
            continue
        if kind == "binary" and finding in flags and not red_flag_shown:
            page.click("#yes-btn")
            page.wait_for_selector("#banner", state="visible")
            red_flag_shown = True
        elif kind == "binary" and not keyboard_used and n:
            # Keyboard only: from the focused question, Tab to "Yes", Tab to "No", Enter.
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "yes-btn"
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            keyboard_used = True
        elif n % 7 == 6:
            page.click("#dontknow-btn")
        elif kind == "binary":
            page.click("#no-btn")
        elif kind == "scale":
            page.locator("#scale").fill("3")
            assert page.inner_text("#scale-value") == "3"
            page.click("#next-btn")
        elif kind == "categorical":
            assert page.is_disabled("#next-btn")
            page.check("#opt-0")
            page.click("#next-btn")
        else:  # multi: a filter box for long lists; the first option
            if page.is_visible("#opt-filter"):
                page.fill("#opt-filter", page.inner_text("label[for=opt-1]")[:4])
                assert page.is_visible("label[for=opt-1]")
                page.fill("#opt-filter", "")
            page.check("#opt-0")
            page.click("#next-btn")
        if n == 2:
            _shot(page, tmp_path, "web-consultation.png")
        if _settled(page, qid) == "summary":
            break
        qid = page.get_attribute("#ask", "data-qid")
    else:
        pytest.fail("no summary after 100 questions")

    assert went_back and keyboard_used
    assert red_flag_shown, f"no red-flag question came up among {codes}"
    assert {"binary", "categorical"} <= types, types
    # Final summary: triage, differential, explanations, notice, reports.
    assert page.evaluate("document.activeElement.id") == "summary-title"
    assert page.is_visible("#banner") and page.is_visible("#notice")
    levels = ["emergency", "urgent_24h", "see_doctor", "self_care"]
    flag_level = page.get_attribute("#banner", "class").split()[-1]
    triage_level = page.get_attribute("#triage", "class").split()[-1]
    assert levels.index(triage_level) <= levels.index(flag_level), (triage_level, flag_level)  # a danger sign is a floor
    assert page.locator("#summary-ddx li").count() >= 3
    assert page.locator("#explanations p").count() >= 1
    assert NOTICE in page.inner_text("#summary-notice")
    _shot(page, tmp_path, "web-summary.png")
    for link, marker in (("#report-html", "<html"), ("#report-md", "#"), ("#report-fhir", '"resourceType"')):
        href = page.get_attribute(link, "href")
        r = page.request.get(server.url + href)
        assert r.status == 200, (link, r.status)
        assert marker in r.text()[:2000], link
    with page.expect_download() as dl:
        page.click("#report-html")
    assert dl.value.suggested_filename.endswith(".html")
    # New consultation: back to the first screen, banner gone.
    page.click("#restart-btn")
    assert page.is_visible("#start") and not page.is_visible("#banner")


def start_with_complaint(page: Any, server: Any, code: str, age: str = "30", sex: str = "F") -> None:
    """Open the page and start a consultation from the first screen: age, sex and one common complaint."""
    page.goto(server.url + "/")
    page.wait_for_selector(f"#c-{code}")
    page.fill("#age", age)
    page.check(f"#sex-{sex}")
    page.check(f"#c-{code}")
    page.click("#start-btn")


def test_each_question_type_gets_its_control(server, page) -> None:
    """Pain as the complaint brings multi-choice (with a filter box), 0-10 scales and yes/no early on."""
    start_with_complaint(page, server, "E_53")
    qid = None
    types: set[str] = set()
    for _ in range(12):
        assert _settled(page, qid) == "ask"
        qid, kind = page.get_attribute("#ask", "data-qid"), page.get_attribute("#ask", "data-type")
        types.add(kind)
        if kind == "binary":
            assert page.is_hidden("#next-btn") and page.get_by_role("button", name="No", exact=True).is_visible()
            page.click("#no-btn")
        elif kind == "scale":
            assert page.get_attribute("#scale", "type") == "range" and page.get_by_label(re.compile("Choose a number")).is_visible()
            page.locator("#scale").fill("7")
            page.click("#next-btn")
        elif kind == "multi":
            assert page.locator("#controls input[type=checkbox]").count() > 1
            if page.locator("#controls input[type=checkbox]").count() > 10:
                label = page.inner_text("label[for=opt-2]")
                page.fill("#opt-filter", label)
                assert page.is_visible("label[for=opt-2]") and page.is_hidden("label[for=opt-0]") == (label.lower() not in page.inner_text("label[for=opt-0]").lower())
                page.get_by_label(label, exact=True).check()
            else:
                page.check("#opt-0")
            page.click("#next-btn")
        else:
            page.check("#opt-0")
            page.click("#next-btn")
        if {"binary", "scale", "multi"} <= types:
            break
    assert {"binary", "scale", "multi"} <= types, types


def _answer_some(page: Any, count: int) -> list[str]:
    """Answer `count` questions ("No" to yes/no, the first option or the low end elsewhere); return their texts."""
    qid = page.get_attribute("#ask", "data-qid")
    asked: list[str] = []
    for _ in range(count):
        asked.append(page.inner_text("#qtext"))
        kind = page.get_attribute("#ask", "data-type")
        if kind == "binary":
            page.click("#no-btn")
        elif kind == "scale":
            page.locator("#scale").fill("2")
            page.click("#next-btn")
        else:
            page.check("#opt-0")
            page.click("#next-btn")
        if _settled(page, qid) == "summary":
            break
        qid = page.get_attribute("#ask", "data-qid")
    return asked


def test_consultation_from_free_text_only(server, page, tmp_path) -> None:
    """Only the textarea is filled: age, sex and complaint come from the text; the page says what it understood."""
    page.goto(server.url + "/")
    page.wait_for_selector("#c-E_201")
    story = page.get_by_label("Describe what is wrong in your own words")
    assert page.get_attribute("#story", "maxlength") == "5000"
    story.fill("I'm a 54 year old man with chest pain and no fever")
    assert page.inner_text("#story-count").startswith("50 /")
    # The live preview (POST /v1/parse) reads it before anything is created.
    page.wait_for_selector("#preview li[data-code=E_91]")
    assert "no fever" in page.inner_text("#preview")
    _shot(page, tmp_path, "web-start.png")
    assert page.input_value("#age") == "" and page.locator("input[name=sex]:checked").count() == 0
    assert page.locator("input[name=complaint]:checked").count() == 0
    page.click("#start-btn")
    assert _settled(page, None) == "ask"

    understood = page.inner_text("#understood").lower()
    assert "i understood" in understood
    assert "pain" in understood or "chest" in understood
    assert "54 years old" in understood and "male" in understood
    fever = page.locator("#understood li[data-code=E_91]")
    assert fever.get_attribute("data-polarity") == "absent" and "no fever" in fever.inner_text()
    for item in page.locator("#understood li[data-code]").all():  # entered as said, or marked to be asked
        assert (item.get_attribute("data-entered") == "true") != ("I will ask" in item.inner_text())
    assert page.is_visible("#qtext") and page.inner_text("#qtext")
    _shot(page, tmp_path, "web-understood.png")
    asked = _answer_some(page, 3)
    assert len(asked) == 3 and len(set(asked)) == 3
    assert not page.is_visible("#understood")  # shown with the first question only


def test_free_text_without_age_or_sex_asks_for_them(server, page) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("#c-E_201")
    page.fill("#story", "chest pain since yesterday")
    page.click("#start-btn")
    page.wait_for_selector("#error", state="visible")
    assert "age and sex" in page.inner_text("#error") and page.is_visible("#start")
    assert page.evaluate("document.activeElement.id") == "age"
    page.fill("#age", "40")
    page.check("#sex-F")
    page.click("#start-btn")
    assert _settled(page, None) == "ask" and not page.is_visible("#error")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory) -> Iterator[tuple[Any, str]]:
    """A `diagnostician serve --require-keys` process with one key."""
    import subprocess
    import sys

    from servers import ServerProcess

    root = tmp_path_factory.mktemp("web-keys")
    data = root / "data"
    cmd = [sys.executable, "-m", "diagnostician.cli.main", "keys", "create", "--name", "web", "--data-dir", str(data)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    srv = ServerProcess(["serve", "--require-keys"], "/v1/health", data, root / "server.log")
    yield srv, done.stdout.strip()
    srv.stop()


def test_api_key_is_asked_for_and_sent(keyed_server, page) -> None:
    srv, key = keyed_server
    assert httpx.get(srv.url + "/", timeout=10).status_code == 200  # the page itself needs no key
    page.goto(srv.url + "/")
    # Without a key: the first API call gets 401, the page says so and opens the key field.
    page.wait_for_selector("#error", state="visible")
    assert "API key" in page.inner_text("#error")
    assert page.get_attribute("#settings", "open") is not None
    field = page.get_by_label("API key")
    assert field.is_visible() and field.get_attribute("type") == "password"
    assert page.evaluate("document.activeElement.id") == "api-key"
    assert page.locator("#complaints input").count() == 0
    # A wrong key is refused the same way.
    field.fill("dx_wrong")
    page.click("#key-btn")
    page.wait_for_function("document.body.dataset.busy !== '1' && document.getElementById('error').textContent.includes('not accepted')")
    # The right key: kept in session storage only, sent as a Bearer header; a consultation starts.
    field.fill(key)
    page.click("#key-btn")
    page.wait_for_selector("#c-E_201")
    assert not page.is_visible("#error")
    assert page.evaluate("sessionStorage.getItem('diagnostician.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0
    with page.expect_request(lambda r: r.url.endswith("/v1/consultations") and r.method == "POST") as req:
        page.fill("#age", "30")
        page.check("#sex-F")
        page.check("#c-E_201")
        page.click("#start-btn")
    assert req.value.headers.get("authorization") == f"Bearer {key}"
    assert _settled(page, None) == "ask"
    assert len(_answer_some(page, 2)) == 2
    # Report links cannot carry a header: with a key, the page fetches them with it and saves the file.
    page.evaluate("""() => { const a = document.getElementById('report-html');
        a.href = `/v1/consultations/${state.id}/report?format=html`; a.setAttribute('download', 'r.html'); }""")
    with page.expect_download() as dl:
        page.evaluate("document.getElementById('report-html').click()")
    assert dl.value.suggested_filename == "r.html" and "<html" in Path(dl.value.path()).read_text()[:2000].lower()
    # A reload in the same tab keeps the key.
    page.reload()
    page.wait_for_selector("#c-E_201")
    assert page.input_value("#api-key") == key and not page.is_visible("#error")
