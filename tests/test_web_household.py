"""The page's family record section in a real headless Chromium: add a member, record a temperature, see its plot.

Skips like tests/test_web.py when Debian's chromium or Playwright is missing.
"""

from __future__ import annotations

from typing import Any

import httpx

from test_web import browser, page  # noqa: F401  (the shared headless Chromium and phone-sized page)


def _idle(page: Any) -> None:
    page.wait_for_function("document.getElementById('family').dataset.busy === '0'")


def test_add_a_member_record_a_temperature_and_see_the_plot(server, page) -> None:
    page.goto(server.url + "/")
    assert not page.is_visible("#member-form")  # collapsed until opened
    page.click("#family-summary")
    _idle(page)
    assert "No member yet" in page.inner_text("#members")
    # A name with markup: it must show as text, never as HTML.
    page.get_by_label("Name", exact=True).fill("<i>Mia</i>")
    page.check("#member-sex-F")
    page.fill("#member-birth", "2019-03-14")
    page.click("#member-add-btn")
    page.wait_for_selector("#member-view:not([hidden])")
    _idle(page)
    assert page.inner_text("#member-title") == "<i>Mia</i>" and page.locator("#family i").count() == 0
    assert "years, female" in page.inner_text("#members li")
    assert page.get_attribute("#members .member-btn", "aria-pressed") == "true"

    page.select_option("#vital-code", "temperature")
    page.fill("#vital-value", "101.3 F")
    page.click("#reading-add-btn")
    page.wait_for_selector("#plots figure svg")
    _idle(page)
    assert "38.5 °C" in page.inner_text("#diary-rows") and "outside the usual range" in page.inner_text("#diary-rows")
    assert page.locator("#plots svg circle").count() == 1
    assert "Temperature (°C)" in page.locator("#plots svg").first.inner_html()

    page.fill("#symptom-name", "cough")
    page.fill("#symptom-severity", "4")
    page.click("#symptom-add-btn")
    page.wait_for_function("document.querySelectorAll('#plots figure svg').length === 2")
    assert "cough: severity 4/10" in page.inner_text("#diary-rows")

    # An implausible reading: the server's one-line message, nothing stored.
    page.fill("#vital-value", "60")
    page.click("#reading-add-btn")
    page.wait_for_selector("#family-error:not([hidden])")
    assert "plausible range" in page.inner_text("#family-error")
    assert page.locator("#diary-rows tr").count() == 2

    members = httpx.get(server.url + "/v1/household/members", timeout=10).json()
    assert [m["name"] for m in members] == ["<i>Mia</i>"]
