"""The review site in a real browser: headless Chromium (Debian's package) driven by Selenium.

Pages are opened from disk (file://) as a reviewer opens them from reports/ or from an
unpacked CI artifact. Assertions are on what a person sees: visible text, the red flag, the
chart, links that lead somewhere when clicked. Screenshots go to tests/artifacts/.
"""
from __future__ import annotations

import re

import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from opslib.evidence import MANIFEST
from opslib.review.scan import SITE_DIR
from opslib.review.site import build_site
from tests.conftest import REPO
from tests.review.conftest import copy_run, degraded, healthy, rewrite, runs_of

ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
XSS = ('<script>window.__xss = 1; document.title = "pwned"</script>'
       '<img src=x onerror="window.__xss = 2; document.title = \'pwned\'"> p95 latency')


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), (f"{path} is missing: tests/system-deps.sh installs Debian's "
                                     "chromium and chromium-driver (make test runs it)")
    profile = tempfile.mkdtemp(prefix="opslib-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--window-size=1400,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(height + 40, 600), 6000))
    driver.save_screenshot(str(ARTIFACTS / f"review-{name}.png"))
    driver.set_window_size(1400, 1000)


def visible(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def names(run, url: str | None) -> bool:
    """``url`` is of ``run`` itself, not of a later run of the same second (``…-health-2``)."""
    return bool(re.search(re.escape(run.name) + r"(?![-\w])", url or ""))


def follow(driver, text: str) -> None:
    """Click the link showing exactly ``text``, as a person would."""
    driver.find_element(By.LINK_TEXT, text).click()


def assert_not_error_page(driver) -> None:
    body = visible(driver)
    assert "ERR_FILE_NOT_FOUND" not in body and "This page isn’t" not in body, driver.current_url


def test_index_in_the_browser_flags_the_tampered_run_and_its_links_work(site, browser):
    bad = healthy(site)
    data = bytearray((bad / "findings.json").read_bytes())
    data[30] ^= 1
    (bad / "findings.json").write_bytes(bytes(data))
    build_site(site)
    browser.get((site / "index.html").as_uri())
    assert browser.title == "Incident evidence"
    text = visible(browser)
    assert "1 incident(s), 3 run(s)" in text
    assert "1 run(s) fail verification" in text and f"inc-a/{bad.name}" in text
    flags = [e for e in browser.find_elements(By.CLASS_NAME, "flag-red") if e.is_displayed()]
    assert flags and "FAILS VERIFICATION" in " ".join(f.text for f in flags)
    assert flags[0].value_of_css_property("background-color") == "rgba(198, 40, 40, 1)"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")
    assert len(rows) == 3
    red = [r for r in rows if "integrity-fail" in r.get_attribute("class")]
    assert len(red) == 1 and "FAILS VERIFICATION" in red[0].text
    assert red[0].value_of_css_property("background-color") == "rgba(255, 235, 238, 1)"
    assert sum("CRITICAL" in r.text for r in rows) == 1 and sum("failed" in r.text for r in rows) == 1
    shot(browser, "index")

    follow(browser, "inc-a")  # the incident's heading
    assert browser.title == "Incident inc-a"
    assert "Next step:" in visible(browser)
    follow(browser, "timeline")
    assert browser.title == "Timeline inc-a"
    follow(browser, "incident inc-a")
    follow(browser, "postmortem draft")
    assert browser.title == "Postmortem draft inc-a" and "Open questions" in visible(browser)
    follow(browser, "All incidents")
    assert browser.title == "Incident evidence"
    # every evidence link of the degraded run opens what it names
    run = degraded(site)
    for label, expect in (("notebook", "Health Checks"), ("findings", '"runbook": "health"'),
                          ("chart: health-latency.png", None)):
        row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")
                   if names(run, r.find_element(By.CSS_SELECTOR, "a.run").get_attribute("href")))
        row.find_element(By.PARTIAL_LINK_TEXT, label).click()
        assert_not_error_page(browser)
        assert names(run, browser.current_url)
        if expect:
            assert expect in browser.page_source
        else:
            img = browser.find_element(By.TAG_NAME, "img")
            assert browser.execute_script("return arguments[0].naturalWidth", img) > 100
        browser.back()


def test_run_page_in_the_browser(site, browser):
    build_site(site)
    run = degraded(site)
    browser.get((site / SITE_DIR / "inc-a" / "runs" / f"{run.name}.html").as_uri())
    text = visible(browser)
    assert "✔ verified" in text and "CRITICAL" in text
    assert "/health latency p95 2597 ms (p50 2182, max 2630)" in text
    assert "◇ planned" in text and "fly machine start 3d8d9e1fe67e89 -a demo-app" in text
    assert f"make run issue=health target=replay:{run}" in text
    img = browser.find_element(By.CSS_SELECTOR, "figure img")
    assert browser.execute_script("return arguments[0].naturalWidth", img) > 100, \
        "the chart loads from disk under the page's content policy"
    shot(browser, "run")
    follow(browser, "executed notebook (HTML)")
    assert_not_error_page(browser)
    assert "Health Checks" in visible(browser)


def test_timeline_in_the_browser(site, browser):
    build_site(site)
    browser.get((site / SITE_DIR / "inc-a" / "timeline.html").as_uri())
    chart = browser.find_element(By.CSS_SELECTOR, "svg.timeline-chart")
    assert chart.is_displayed() and chart.size["width"] > 800 and chart.size["height"] > 100
    lanes = {e.text for e in chart.find_elements(By.TAG_NAME, "text")}
    assert {"health", "faulty", "action planned", "action applied"} <= lanes
    bars = chart.find_elements(By.TAG_NAME, "rect")
    assert len(bars) == 1 + 3, "the background and one bar per run"
    text = visible(browser)
    assert "Actions: ◇ planned 1 · ◆ applied 0" in text
    notable = browser.find_element(By.CSS_SELECTOR, "table.notable").text
    assert "first critical finding of health" in notable
    assert "start stopped machine 3d8d9e1fe67e89 (ams)" in notable and "planned" in notable
    events = browser.find_elements(By.CSS_SELECTOR, "table.events tbody tr")
    assert len(events) > 20
    errors = [e for e in events if "err" in e.get_attribute("class")]
    assert errors and all(("http 503" in e.text or "error" in e.text) for e in errors)
    shot(browser, "timeline")
    events[0].find_element(By.TAG_NAME, "a").click()
    assert_not_error_page(browser)
    assert browser.title.startswith("health ") or browser.title.startswith("faulty ")


def test_comparison_in_the_browser(site, browser):
    build_site(site)
    browser.get((site / SITE_DIR / "inc-a" / "index.html").as_uri())
    follow(browser, f"vs {degraded(site).name}")
    assert_not_error_page(browser)
    assert browser.title == f"Compare {degraded(site).name} → {healthy(site).name}"
    text = visible(browser)
    assert "Findings: 2 added, 5 resolved, 1 changed, 1 unchanged" in text
    diff = browser.find_element(By.CSS_SELECTOR, "table.findings-diff").text
    assert "resolved checks-critical CRITICAL — 1 health check(s) critical on 1 machine(s)" in diff
    assert "changed (better) health-latency CRITICAL OK" in diff
    metrics = browser.find_element(By.CSS_SELECTOR, "table.metrics").text
    assert "health-latency p95 2597 ms 128 ms -2469 title" in metrics
    shot(browser, "compare")
    follow(browser, f"inc-a/{healthy(site).name}")
    assert browser.title == f"health {healthy(site).name}"


def test_script_in_evidence_is_shown_as_text_and_never_runs(site, browser):
    rewrite(degraded(site), lambda d: d["findings"][0].update(title=XSS))
    build_site(site)
    for page, title in ((site / SITE_DIR / "inc-a" / "runs" / f"{degraded(site).name}.html",
                         f"health {degraded(site).name}"),
                        (site / SITE_DIR / "inc-a" / "timeline.html", "Timeline inc-a"),
                        (site / SITE_DIR / "inc-a" / "postmortem.html", "Postmortem draft inc-a")):
        browser.get(page.as_uri())
        assert browser.title == title, "a script from the evidence changed the page"
        assert browser.execute_script("return window.__xss === undefined")
        assert XSS in visible(browser), "the title is shown as the text it is"
    shot(browser, "xss")


def test_damaged_runs_are_visible_with_their_reasons(site, browser):
    good = healthy(site)
    missing = copy_run(good, "20300101T000000Z-health")
    (missing / "run.log").unlink()
    unreadable = copy_run(good, "20300101T000001Z-health")
    (unreadable / MANIFEST).write_text("{not json")
    newer = copy_run(good, "20300101T000002Z-health")
    rewrite(newer, lambda d: d.update(schema=2))
    build_site(site)
    browser.get((site / "index.html").as_uri())
    box = browser.find_element(By.ID, "unreadable")
    assert box.is_displayed()
    text = box.text
    assert "3 run(s) could not be read fully" in text
    assert f"{missing.name} — missing files: run.log" in text
    assert f"{unreadable.name} — EVIDENCE_MANIFEST.json is unreadable" in text
    assert f"{newer.name} — findings.json schema 2 is newer than this tool (1)" in text
    shot(browser, "damaged")
    follow(browser, f"inc-a/{newer.name}")
    assert "upgrade opslib to read it" in visible(browser)
    assert runs_of(site, "faulty")


def test_hostile_text_from_a_remote_answer_never_runs_in_the_run_notebook_html(tmp_path, browser):
    """A live run against an app whose /health body carries markup, and an on-call contact
    with markup: the run's own HTML (one click from the index) shows it as text, never runs
    it, and carries the no-script policy."""
    import json

    from tests.conftest import clean_env, only_run
    from tests.inprocess import opslib_run
    from tests.servers import LocalHTTPServer, Reply

    reports = tmp_path / "reports"
    with LocalHTTPServer(lambda r: Reply(200, {"status": XSS, "timestamp": "x"})) as app:
        proc = opslib_run("run", "health", "--app-url", app.url, "-p", "probes=1",
                          env=clean_env(OPSLIB_REPORTS=str(reports), OPS_ON_CALL=XSS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    details = " ".join(f["detail"] + f["title"] for f in
                       json.loads((run / "findings.json").read_text())["findings"])
    assert "<script>" in details  # the hostile text is in the evidence, as data
    html = (run / "health.html").read_text()
    assert "Content-Security-Policy" in html and "script-src 'none'" in html
    browser.get((run / "health.html").as_uri())
    assert browser.title != "pwned", "a script from the evidence changed the page"
    assert browser.execute_script("return window.__xss === undefined")
    assert "window.__xss = 1" in visible(browser), "shown as the text it is"
    shot(browser, "xss-notebook")
