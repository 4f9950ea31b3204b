"""The review site built over real evidence: what it lists, flags, links and keeps up to date."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

from bs4 import BeautifulSoup

from opslib.evidence import MANIFEST
from opslib.review.scan import SITE_DIR
from opslib.review.site import build_site
from opslib.review.timeline import signal_time
from tests.conftest import REPO, clean_env, opslib_cli
from tests.review.conftest import copy_run, degraded, healthy, rewrite, runs_of

XSS = ('<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'
       " latency")


def soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(), "html.parser")


def review(reports: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = opslib_cli("review", "--reports", str(reports), *extra,
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def local_links(page: Path) -> list[Path]:
    out = []
    for a in soup(page).find_all(["a", "img"]):
        ref = a.get("href") or a.get("src")
        if ref and "://" not in ref:
            out.append((page.parent / unquote(ref)).resolve())
    return out


def run_row(page: Path, run: Path):
    """The table row of ``run`` on an index or incident page."""
    for tr in soup(page).select("table.runs tr"):
        a = tr.find("a", class_="run")
        if a and a["href"].endswith(f"runs/{run.name}.html"):
            return tr
    raise AssertionError(f"{run.name} is not listed on {page}")


# ----------------------------------------------------------------------------- the index
def test_index_lists_every_run_with_its_facts_and_working_links(site):
    proc = review(site)
    assert "1 incident(s), 3 run(s)" in proc.stdout
    index = site / "index.html"
    bad = degraded(site)
    row = run_row(index, bad).get_text(" ", strip=True)
    for word in ("health", "demo (degraded)", "demo-app", "ok", "CRITICAL", "L1 On-Call Engineer",
                 "✔ verified", "notebook", "findings", "chart: health-latency.png"):
        assert word in row, (word, row)
    started = json.loads((bad / "findings.json").read_text())["started_at"][:19].replace("T", " ")
    assert started in row
    failed = runs_of(site, "faulty")[0]
    row = run_row(index, failed).get_text(" ", strip=True)
    assert "failed" in row and "faulty" in row
    assert "OK" in run_row(index, healthy(site)).get_text(" ", strip=True)
    links = local_links(index)
    assert len(links) > 10
    for target in links:
        assert target.exists(), f"broken link {target}"
    hrefs = {a["href"] for a in soup(index).find_all("a")}
    assert f"inc-a/{bad.name}/health.html" in hrefs
    assert f"inc-a/{bad.name}/charts/health-latency.png" in hrefs
    assert not any(".staging" in h for h in hrefs)


def test_damaged_runs_are_shown_with_their_reason_and_do_not_break_the_index(site):
    good = healthy(site)
    missing = copy_run(good, "20300101T000000Z-health")
    (missing / "run.log").unlink()
    (missing / "health.html").unlink()
    unreadable = copy_run(good, "20300101T000001Z-health")
    (unreadable / MANIFEST).write_text("{not json")
    newer = copy_run(good, "20300101T000002Z-health")
    rewrite(newer, lambda d: d.update(schema=2))
    (site / "inc-a" / "20300101T000003Z-stray").mkdir()
    staging = site / ".staging" / "run-abc"
    staging.mkdir(parents=True)
    (staging / "findings.json").write_text("{}")
    proc = review(site)
    assert "1 incident(s), 7 run(s)" in proc.stdout
    index = site / "index.html"
    incident = site / SITE_DIR / "inc-a" / "index.html"
    text = soup(incident).get_text(" ", strip=True)
    row = run_row(incident, missing).get_text(" ", strip=True)
    assert "⚠ unreadable" in row and "missing files: run.log, health.html" in row
    assert "FAILS VERIFICATION" in row and "missing run.log" in row
    row = run_row(incident, unreadable).get_text(" ", strip=True)
    assert "EVIDENCE_MANIFEST.json is unreadable" in row and "FAILS VERIFICATION" in row
    row = run_row(incident, newer).get_text(" ", strip=True)
    assert "findings.json schema 2 is newer than this tool (1); upgrade opslib" in row
    assert "✔ verified" in row, "a newer schema is not tampering"
    assert "not a run folder" in text
    top = soup(index).find(id="unreadable").get_text(" ", strip=True)
    for run in (missing, unreadable, newer):
        assert run.name in top
    assert "run-abc" not in index.read_text()
    assert (site / SITE_DIR / "inc-a" / "runs" / f"{newer.name}.html").is_file()


def test_a_tampered_run_is_flagged_red_everywhere_never_hidden(site):
    many = [copy_run(healthy(site), f"20300101T0000{i:02d}Z-health") for i in range(12)]
    bad = degraded(site)
    data = bytearray((bad / "findings.json").read_bytes())
    data[40] ^= 1
    (bad / "findings.json").write_bytes(bytes(data))
    proc = review(site)
    assert f"FAILS VERIFICATION  inc-a/{bad.name}" in proc.stdout
    index = site / "index.html"
    # The index shows only the latest runs of each incident: the tampered run is older than
    # the twelve copies, so it must still be named in the alert at the top.
    assert bad.name not in " ".join(a["href"] for a in soup(index).select("table.runs a.run"))
    alert = soup(index).find(id="integrity")
    assert "1 run(s) fail verification" in alert.get_text() and bad.name in alert.get_text()
    assert "modified findings.json" in alert.get_text()
    incident = site / SITE_DIR / "inc-a" / "index.html"
    row = run_row(incident, bad)
    assert "integrity-fail" in row.get("class", [])
    assert row.find(class_="flag-red").get_text(strip=True) == "✖ FAILS VERIFICATION"
    page = soup(site / SITE_DIR / "inc-a" / "runs" / f"{bad.name}.html")
    assert re.search(r"modified\s+findings.json\s+expected [0-9a-f]{64}, found [0-9a-f]{64}",
                     page.find(id="integrity").get_text())
    assert len(many) == 12


# ----------------------------------------------------------------------------- incremental
def test_rebuild_rereads_only_changed_runs_and_still_catches_tampering(site):
    first = build_site(site)
    assert (first.reread, first.cached) == (3, 0) and first.written > 5
    again = build_site(site)
    assert (again.reread, again.cached, again.written) == (0, 3, 0)
    bad = healthy(site)
    target = bad / "findings.json"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[30] ^= 1
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the edit from mtime
    third = build_site(site)
    assert (third.reread, third.cached) == (1, 2)
    assert third.failing == [f"inc-a/{bad.name}"]
    page = site / SITE_DIR / "inc-a" / "runs" / f"{bad.name}.html"
    assert "FAILS VERIFICATION" in page.read_text()
    shutil.rmtree(bad)
    fourth = build_site(site)
    assert fourth.runs == 2 and fourth.removed >= 1 and not page.exists()


def test_review_while_a_run_is_being_written(site):
    """Builds during a real run never list the staging folder, and the finished run appears."""
    env = clean_env(OPSLIB_REPORTS=str(site))
    proc = subprocess.Popen([sys.executable, "-m", "opslib", "run", "health", "--incident",
                             "inc-live"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    builds = 0
    saw_staging = False
    while proc.poll() is None:
        report = build_site(site)
        builds += 1
        saw_staging |= any((site / ".staging").glob("run-*"))
        assert report.runs in (3, 4)
        assert ".staging" not in (site / "index.html").read_text()
        time.sleep(0.2)
    out = proc.stdout.read()
    assert proc.returncode == 0, out
    assert builds > 1 and saw_staging, "the build loop never overlapped the run"
    final = build_site(site)
    assert final.runs == 4 and final.failing == []
    assert "inc-live" in (site / "index.html").read_text()


# ----------------------------------------------------------------------------- timeline
def test_timeline_merges_calls_actions_and_notable_events_in_time_order(site):
    review(site)
    page = site / SITE_DIR / "inc-a" / "timeline.html"
    doc = soup(page)
    assert doc.find("svg", class_="timeline-chart") is not None
    rows = doc.select("table.events tbody tr")
    texts = [r.get_text(" ", strip=True) for r in rows]
    events = sum(len((r / "timeline.jsonl").read_text().splitlines()) for r in
                 (degraded(site), healthy(site), runs_of(site, "faulty")[0]))
    calls = [t for t in texts if " call " in f" {t} "]
    assert len(rows) >= events, "every timeline event is on the page"
    assert any("fly-machines: list_machines" in t for t in calls)
    assert any("postgres: health.recovery" in t for t in calls)
    assert any("error: ReadTimeout" in t for t in calls)
    times = [t[:19] for t in texts]
    assert times == sorted(times), "merged in time order"
    notable = doc.select("table.notable tbody tr")
    ntext = " | ".join(r.get_text(" ", strip=True) for r in notable)
    assert "first critical finding of health: /health latency p95" in ntext
    assert "fly machine start 3d8d9e1fe67e89 -a demo-app" in ntext and "planned" in ntext
    assert "planned 1" in doc.find(id="action-counts").get_text(" ", strip=True)
    assert "applied 0" in doc.find(id="action-counts").get_text(" ", strip=True)


def test_log_signals_appear_at_their_first_seen_time(site):
    run = degraded(site)
    rewrite(run, lambda d: d["findings"].append({
        "id": "logs.oom_kill", "severity": "critical", "title": "OOM kills (3x on 148ed193b95089)",
        "detail": "Out of memory: Killed process", "source": "logs",
        "evidence": ["oom_kill: count=3 first_seen=2026-11-20T03:02:00Z last_seen=2026-11-20T03:09:00Z"]}))
    review(site)
    rows = soup(site / SITE_DIR / "inc-a" / "timeline.html").select("table.notable tbody tr")
    log = [r.get_text(" ", strip=True) for r in rows if "log signal" in r.get_text()]
    assert log and log[0].startswith("2026-11-20 03:02:00Z")
    assert "OOM kills (3x on 148ed193b95089)" in log[0]
    assert signal_time({"id": "log-x", "title": "burst at 2026-11-20T03:05:00Z"}).minute == 5
    assert signal_time({"id": "log-x", "title": "no time"}) is None


# ----------------------------------------------------------------------------- postmortem
def test_postmortem_draft_has_the_sre_sections_and_every_line_links_to_its_evidence(site):
    review(site)
    md_path = site / SITE_DIR / "inc-a" / "postmortem.md"
    md = md_path.read_text()
    heads = re.findall(r"^## (.+)$", md, re.M)
    assert heads == ["Summary", "Impact", "Timeline", "Findings and the evidence behind them",
                     "Actions taken", "Escalations", "Open questions"]
    lines = [ln for ln in md.splitlines() if ln.startswith(("- ", "| ")) and "---|" not in ln
             and not ln.startswith("| Time")]
    assert len(lines) > 15
    for ln in lines:
        links = re.findall(r"\]\(<([^>]+)>\)", ln)
        assert links, f"a line without its source: {ln}"
        for ref in links:
            assert (md_path.parent / unquote(ref)).exists(), ref
    assert "CRITICAL" in md and "2597 ms" in md
    assert "fly machine start 3d8d9e1fe67e89 -a demo-app" in md
    assert "faulty did not complete (failed: injected failure)" in md
    assert "went from CRITICAL" in md and "to OK" in md
    html = site / SITE_DIR / "inc-a" / "postmortem.html"
    for target in local_links(html):
        assert target.exists(), target


# ----------------------------------------------------------------------------- escaping
def test_evidence_text_is_escaped_in_every_page_and_the_markdown(site):
    rewrite(degraded(site), lambda d: d["findings"][0].update(title=XSS, detail="<b>bold</b>"))
    review(site)
    pages = list((site / SITE_DIR).rglob("*.html")) + [site / "index.html"]
    shown = 0
    for page in pages:
        text = page.read_text()
        assert "<script>" not in text and "onerror=" not in text.replace("onerror=&quot;", "")
        assert "<img src=x" not in text and "<b>bold" not in text
        shown += "&lt;script&gt;document.title" in text
    assert shown >= 4, "the title is shown (as text) on the run, incident, timeline, postmortem"
    md = (site / SITE_DIR / "inc-a" / "postmortem.md").read_text()
    assert "\\<script\\>" in md and "\\<img src=x" in md
    assert re.findall(r"(?<![\\(])<", md) == [], "no unescaped '<' outside link destinations"


def test_pages_carry_a_policy_that_forbids_script(site):
    review(site)
    for page in [site / "index.html", *(site / SITE_DIR).rglob("*.html")]:
        meta = soup(page).find("meta", attrs={"http-equiv": "Content-Security-Policy"})
        assert meta and "script-src 'none'" in meta["content"]
        assert soup(page).find("script") is None


# ----------------------------------------------------------------------------- paging
def test_a_long_history_is_paged_and_grouped_by_incident(site):
    run = healthy(site)
    for i in range(23):
        copy_run(run, run.name, incident=f"inc-{i:02d}")
    build_site(site)
    index = soup(site / "index.html")
    assert len(index.select("section.incident")) == 20
    page2 = site / SITE_DIR / "index-2.html"
    assert page2.is_file() and len(soup(page2).select("section.incident")) == 4
    assert index.find("nav", class_="pager").find("a")["href"] == f"{SITE_DIR}/index-2.html"
