"""The consultation page's examination and test results form, in a real headless Chromium (see test_web.py)."""

from __future__ import annotations

from typing import Any

from test_web import start_with_complaint, _answer_some, _settled, browser, page  # noqa: F401

from diagnostician.engine import NOTICE


def _idle(page: Any) -> None:
    page.wait_for_function("document.body.dataset.busy !== '1'")


def test_results_are_entered_after_the_inquiry(server, page) -> None:
    # A short consultation through the page (it opens no consultation by URL): sore throat, then answers to the end.
    start_with_complaint(page, server, "E_97")
    assert _settled(page, None) == "ask"
    assert not page.is_visible("#results-form")  # only with the assessment, once the inquiry is done
    _answer_some(page, 100)
    assert page.is_visible("#summary"), "no summary after 100 questions"
    assert page.is_visible("#results-form") and not page.is_visible("#results-out")
    assert "e.g. rapid strep test positive" in page.get_attribute("#results-text", "placeholder")
    assert page.locator("#summary-ddx li").count() >= 3
    page.evaluate("document.querySelectorAll('#summary-ddx li').forEach((li) => { li.dataset.old = '1'; })")

    # In words: the reply's assessment is rendered again and the page says what it did with the text.
    page.get_by_label("Results known so far, in words").fill("rapid strep test positive")
    with page.expect_response(lambda r: r.url.endswith("/results") and r.request.method == "POST") as resp:
        page.click("#results-btn")
    assert resp.value.status == 200
    reply = resp.value.json()
    _idle(page)
    page.wait_for_selector("#results-out", state="visible")
    said = page.inner_text("#results-out")
    assert ("→" in said) == bool(reply["results"]["entered"])
    for what in reply["results"]["uninterpreted"]:
        assert "cannot interpret" in said and what in said
    assert "rapid strep" in said.lower()
    assert page.locator("#summary-ddx li[data-old]").count() == 0, "the differential is rendered from the reply"
    assert page.locator("#summary-ddx li").count() >= 3
    assert page.locator("#summary-ddx li .row span").first.inner_text() == reply["differential"][0]["name"]
    assert page.input_value("#results-text") == "" and not page.is_visible("#results-error")
    assert page.is_visible("#notice") and NOTICE in page.inner_text("#summary-notice")

    # A result the pack can weigh: shown as the test and what the result means.
    page.fill("#results-text", "troponin raised")
    page.click("#results-btn")
    _idle(page)
    page.wait_for_function("document.getElementById('results-out').textContent.includes('positive / abnormal')")
    assert "troponin" in page.inner_text("#results-out").lower()

    # Nothing recognised: the problem's detail is shown inline, the text kept for correcting.
    page.fill("#results-text", "<b>all fine</b>")
    page.click("#results-btn")
    _idle(page)
    page.wait_for_selector("#results-error", state="visible")
    assert "recognised" in page.inner_text("#results-error")
    assert page.input_value("#results-text") == "<b>all fine</b>" and page.locator("#summary b").count() == 0
    assert not page.is_visible("#error")
