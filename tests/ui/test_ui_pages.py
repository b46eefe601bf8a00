"""Every page of the web UI in headless Chromium, against a real server over seeded data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from ui_seed import seed, served

from testing.serving import uvicorn_server

pytestmark = pytest.mark.slow
TIMEOUT = 15_000  # ms: the machine running the tests may be loaded


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[dict[str, Any]]:
    repo = tmp_path_factory.mktemp("ui") / "work"
    data = seed(repo)
    data["repo"] = repo
    with served(repo) as url:
        data["url"] = url
        data["shots"] = tmp_path_factory.mktemp("screenshots")
        yield data


@pytest.fixture(scope="module")
def secured(site: dict[str, Any]) -> Iterator[str]:
    """The same repository behind a server that asks for tokens."""
    from gitml.server.tracking_app import ServerSettings, create_app

    app = create_app(ServerSettings(repo=site["repo"], tokens={"s3cret": "read"}))
    with uvicorn_server(app) as url:
        yield url


@pytest.fixture
def page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A refused filter (400) or token (401) is shown on the page; Chromium logs it as well.
    expected = ("status of 400", "status of 401")
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not any(e in m.text for e in expected)
            else None
        ),
    )
    yield page
    context.close()
    assert errors == []


def shot(page: Any, site: dict[str, Any], name: str) -> None:
    path: Path = site["shots"] / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000


def runs_page(page: Any, site: dict[str, Any], query: str = "") -> None:
    page.goto(f"{site['url']}/ui/#/experiments/{site['experiment']}{query}")
    page.wait_for_selector("[data-testid=runs-grid][data-ready]")


def names(page: Any) -> list[str]:
    return list(
        page.locator(".grid-row[data-run] [role=gridcell]:nth-child(2) a").all_inner_texts()
    )


def wait_count(page: Any, runs: int) -> None:
    page.wait_for_function(
        "document.querySelector('[data-testid=run-count]').textContent == "
        f"'{runs} run{'' if runs == 1 else 's'}'"
    )


def test_experiments_list_runs_counts_and_links(page: Any, site: dict[str, Any]) -> None:
    page.goto(site["url"] + "/")  # redirected to /ui/
    rows = page.locator("[data-testid=experiments] tbody tr")
    rows.first.wait_for()
    assert rows.count() == 3
    churn = page.locator(f"tr[data-experiment='{site['experiment']}']")
    assert churn.locator("td").nth(2).inner_text() == "8"
    assert page.locator("nav a[aria-current=page]").inner_text() == "Experiments"
    shot(page, site, "experiments")
    churn.get_by_role("link", name="churn").click()
    page.wait_for_selector("[data-testid=runs-grid][data-ready]")
    assert page.locator("[data-testid=run-count]").inner_text() == "8 runs"


def test_runs_table_filters_with_inline_errors_and_sorts(page: Any, site: dict[str, Any]) -> None:
    runs_page(page, site)
    headers = page.locator(".grid-head [role=columnheader]").all_inner_texts()
    assert headers[1:4] == ["Run", "Status", "Started"]
    assert "loss" in headers and "lr" in headers
    shot(page, site, "runs")

    search = page.get_by_label("Filter")
    search.fill("params.optimizer = 'adam'")
    search.press("Enter")
    wait_count(page, 2)
    assert sorted(names(page)) == ["train-0", "train-2"]
    assert "filter=" in page.url  # the filtered view has its own URL

    search.fill("metrics.loss >< 2")
    search.press("Enter")
    error = page.locator("[data-testid=filter-error]")
    error.wait_for()
    assert "expected a number" in error.inner_text() and "^" in error.inner_text()
    assert search.get_attribute("aria-invalid") == "true"
    shot(page, site, "runs-filter-error")

    search.fill("")
    search.press("Enter")
    wait_count(page, 8)
    loss = page.locator(".grid-head [role=columnheader]", has_text="loss")
    loss.get_by_role("button").click()  # descending first
    page.wait_for_function("document.querySelector('.grid-head [aria-sort=descending]') !== null")
    assert names(page)[:3] == ["dirty-edit", "trial-0", "trial-1"]  # 0.42, 0.3, 0.2
    assert names(page)[-1] == "sweep"  # no loss: last either way
    loss.get_by_role("button").click()
    page.wait_for_function("document.querySelector('.grid-head [aria-sort=ascending]') !== null")
    assert names(page)[:2] == ["train-3", "train-2"]  # 1/23 and 1/22 at step 19
    assert names(page)[-1] == "sweep"
    assert "order=" in page.url
    # The sorted, filtered view is a stable URL: loading it again shows the same rows.
    page.reload()
    page.wait_for_selector("[data-testid=runs-grid][data-ready]")
    assert names(page)[:2] == ["train-3", "train-2"]

    # Columns are chosen among every key the experiment's runs use.
    page.get_by_text("Columns").click()
    page.get_by_label("grid", exact=True).uncheck()
    page.get_by_label("team", exact=True).check()
    page.wait_for_function("location.hash.includes('tags.team')")
    page.wait_for_selector(".grid-head [title='tags.team']")
    headers = page.locator(".grid-head [role=columnheader]").all_inner_texts()
    assert "#team" in headers and "grid" not in headers
    row = page.locator(".grid-row[data-index='0']")
    assert row.locator("[role=gridcell]").last.inner_text() == "growth"  # train-3's team


def test_select_runs_and_compare(page: Any, site: dict[str, Any]) -> None:
    runs_page(page, site, "?filter=" + quote("attributes.run_name LIKE 'train-%'"))
    wait_count(page, 4)
    page.get_by_label("Select train-0").check()
    page.get_by_label("Select train-1").check()
    page.get_by_label("Select train-3").check()
    compare = page.locator("[data-testid=compare]")
    assert compare.inner_text() == "Compare (3)"
    compare.click()
    page.wait_for_selector("[data-testid=compare-charts] [data-metric=loss] path.series")
    loss = page.locator("[data-testid=compare-charts] [data-metric=loss] path.series")
    assert loss.count() == 3
    assert [loss.nth(i).get_attribute("data-points") for i in range(3)] == ["20"] * 3
    assert page.locator("[data-testid=compare-charts] .card").count() == 2  # loss, accuracy
    diff = page.locator("[data-testid=diff] tbody tr")
    assert {diff.nth(i).get_attribute("data-key") for i in range(diff.count())} >= {
        "params.lr",
        "params.optimizer",
        "metrics.loss",
    }
    assert "diff" in (page.locator("tr[data-key='params.lr']").get_attribute("class") or "")
    page.get_by_label("Only rows that differ").check()
    assert page.locator("[data-testid=diff] tbody tr").count() == diff.count()
    assert page.locator("[data-testid=parallel]").get_attribute("data-lines") == "3"
    axes = page.locator("[data-testid=parallel] text").all_text_contents()
    assert "params.lr" in axes and "metrics.accuracy" in axes
    page.get_by_label("X", exact=True).select_option("params.lr")
    page.get_by_label("Y", exact=True).select_option("metrics.loss")
    assert page.locator("[data-testid=scatter] circle.dot").count() == 3
    assert page.locator("[data-testid=scatter]").get_attribute("data-points") == "3"
    shot(page, site, "compare")


def test_keyboard_moves_selects_and_opens_runs(page: Any, site: dict[str, Any]) -> None:
    runs_page(page, site, "?order=attributes.run_name%20ASC")
    first = page.locator(".grid-row[data-index='0']")
    first.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("document.activeElement.dataset.index")
    assert focused == "2"
    page.keyboard.press(" ")
    row = page.locator(".grid-row[data-index='2']")
    assert row.get_attribute("aria-selected") == "true"
    assert page.locator("[data-testid=compare]").inner_text() == "Compare (1)"
    name = row.locator("a").inner_text()
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.dataset.index") == "7"
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_selector("h1 .badge")
    assert page.locator("h1").inner_text().startswith(name)
    assert "#/runs/" in page.url


def test_run_page_charts_zoom_smoothing_and_log_scale(page: Any, site: dict[str, Any]) -> None:
    run_id = site["runs"][0]
    page.goto(f"{site['url']}/ui/#/runs/{run_id}")
    page.wait_for_selector("[data-testid=metric-charts] path.series")
    cards = page.locator("[data-testid=metric-charts] .card")
    assert cards.count() == 2
    loss = page.locator("[data-metric=loss] path.series")
    assert loss.count() == 1 and loss.get_attribute("data-points") == "20"
    before = loss.get_attribute("d")
    page.get_by_label("Smoothing").fill("0.9")
    assert loss.get_attribute("d") != before
    page.get_by_label("Log scale").check()
    assert loss.get_attribute("data-points") == "20"
    chart = page.locator("[data-metric=loss] svg")
    box = chart.bounding_box()
    assert box is not None
    # Drag across the middle of the plot: the chart zooms into those steps.
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=4)
    page.mouse.up()
    host = page.locator("[data-metric=loss] .line-chart")
    assert host.get_attribute("data-zoomed") == "true"
    assert 0 < int(loss.get_attribute("data-points") or 0) < 20
    chart.dblclick()
    assert host.get_attribute("data-zoomed") == "false"
    chart.focus()
    page.keyboard.press("+")
    assert host.get_attribute("data-zoomed") == "true"
    page.keyboard.press("0")
    assert loss.get_attribute("data-points") == "20"
    # Pointing at a step shows each series' value there in the legend.
    legend = page.locator("[data-metric=loss] .legend span")
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    assert " @ " in legend.inner_text()
    page.mouse.wheel(0, -200)  # a plain wheel scrolls the page, it does not zoom
    assert host.get_attribute("data-zoomed") == "false"
    box = chart.bounding_box()  # the page may have scrolled
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -200)
    page.keyboard.up("Control")
    page.wait_for_function(
        "document.querySelector('[data-metric=loss] .line-chart').dataset.zoomed === 'true'"
    )
    chart.dblclick()
    page.mouse.move(0, 0)
    assert " @ " not in legend.inner_text()
    assert page.locator("[data-testid=params] tbody tr").count() == 3
    shot(page, site, "run")


def test_run_page_source_dirty_marker_and_artifact_previews(
    page: Any, site: dict[str, Any]
) -> None:
    page.goto(f"{site['url']}/ui/#/runs/{site['dirty']}")
    page.wait_for_selector("[data-testid=artifacts]")
    assert page.locator("[data-testid=dirty]").inner_text() == "dirty"
    assert page.locator("[data-testid=code-commit]").inner_text() == site["code_commit"][:12]
    files = page.locator("[data-testid=artifacts] button")
    assert files.count() == 5
    preview = page.locator("[data-testid=preview]")

    page.locator("button[data-path='plots/curve.png']").click()
    image = preview.locator("[data-testid=image-preview]")
    image.wait_for()
    page.wait_for_function(
        "document.querySelector('[data-testid=image-preview]').naturalWidth === 4"
    )
    shot(page, site, "run-artifact-image")

    page.locator("button[data-path='notes.txt']").click()
    page.wait_for_selector("[data-testid=text-preview][data-kind=text]")
    assert preview.locator("pre").inner_text().startswith("hello from the run")
    download = preview.locator("[data-testid=download]")
    assert download.get_attribute("download") == "notes.txt"
    with page.expect_download() as info:
        download.click()
    saved = info.value.path()
    assert Path(saved).read_text() == "hello from the run\nsecond line\n"

    page.locator("button[data-path='config.json']").click()
    page.wait_for_selector("[data-testid=text-preview][data-kind=json]")
    assert '"threshold": 0.5' in preview.locator("pre").inner_text()

    page.locator("button[data-path='params.yaml']").click()
    page.wait_for_selector("[data-testid=text-preview][data-kind=yaml]")
    assert "depth: 5" in preview.locator("pre").inner_text()

    page.locator("button[data-path='data/scores.csv']").click()
    table = preview.locator("[data-testid=csv-preview]")
    table.wait_for()
    assert table.locator("th").all_inner_texts() == ["id", "score"]
    assert table.locator("tbody tr").count() == 2
    shot(page, site, "run-artifact-csv")

    # The code commit: its message, and the runs made from it.
    page.locator("[data-testid=code-commit]").click()
    page.wait_for_selector("[data-testid=commit-message]")
    assert page.locator("[data-testid=commit-sha]").inner_text() == site["code_commit"]
    assert page.locator("[data-testid=commit-message]").inner_text().strip() == "initial"


def test_run_page_shows_logged_models_one_line_each(page: Any, site: dict[str, Any]) -> None:
    page.goto(f"{site['url']}/ui/#/runs/{site['model_run']}")
    logged = page.locator("[data-testid=logged-models] div")
    logged.first.wait_for()
    assert logged.count() == 1
    text = logged.inner_text()
    assert text.startswith("model · python_function, sklearn · ") and text.endswith(" UTC")
    assert "utc_time_created" not in page.locator("section[aria-label=Tags]").inner_text()


def test_nested_runs_link_parent_and_children(page: Any, site: dict[str, Any]) -> None:
    page.goto(f"{site['url']}/ui/#/runs/{site['parent']}")
    children = page.locator("[data-testid=children] a")
    children.first.wait_for()
    assert sorted(children.all_inner_texts()) == ["trial-0", "trial-1"]
    children.first.click()
    parent = page.locator("[data-testid=parent]")
    parent.wait_for()
    assert parent.inner_text() == "sweep"
    parent.click()
    page.wait_for_selector("[data-testid=children]")


def test_models_stages_timeline_and_lineage_links(page: Any, site: dict[str, Any]) -> None:
    page.goto(f"{site['url']}/ui/#/models")
    row = page.locator("tr[data-model='churn-model']")
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() == "3"
    assert "production: v3" in row.inner_text() and "staging: v2" in row.inner_text()
    shot(page, site, "models")
    row.get_by_role("link", name="churn-model").click()

    timeline = page.locator("[data-testid=timeline] li")
    timeline.first.wait_for()
    assert timeline.count() == 4  # newest first
    assert [timeline.nth(i).get_attribute("data-stage") for i in range(4)] == [
        "staging",
        "production",
        "production",
        "production",
    ]
    merged = timeline.nth(1)
    assert merged.get_attribute("data-commit") == site["merge"]
    assert "Merge pull #7" in merged.inner_text()
    assert "gitml/proposals/production/churn-model-v3" in merged.inner_text()
    canary = timeline.nth(2).inner_text()
    assert "v1 (90%) + v2 (10%)" in canary and "Ada" in canary
    stages = page.locator("[data-testid=stages] tr[data-stage]")
    assert stages.count() == 2
    versions = page.locator("[data-testid=versions] tbody tr")
    assert versions.count() == 3
    assert "sha256:" in versions.first.inner_text()
    shot(page, site, "model")

    # Lineage: the stage change -> the version it declares -> its run -> the code commit.
    merged.locator("a[data-version='3']").click()
    page.wait_for_selector("[data-testid=version-run]")
    assert page.locator("h1").inner_text().startswith("churn-model v3")
    assert "production" in page.locator("[data-testid=version-history]").inner_text()
    shot(page, site, "version")
    page.locator("[data-testid=version-run]").click()
    page.wait_for_selector("[data-testid=code-commit]")
    assert site["model_run"] in page.url
    assert "churn-model v1" in page.inner_text("main")  # registered as
    page.locator("[data-testid=code-commit]").click()
    page.wait_for_selector("[data-testid=commit-message]")
    assert page.locator("[data-testid=commit-sha]").inner_text() == site["code_commit"]
    shot(page, site, "commit")


def test_page_urls_are_stable_and_dark_mode_reads(page: Any, site: dict[str, Any]) -> None:
    # A page URL typed in (or bookmarked) loads that page, hash or path.
    page.goto(f"{site['url']}/ui/#/models/churn-model/versions/2")
    page.wait_for_selector("[data-testid=version-run]")
    response = page.goto(f"{site['url']}/ui/runs/{site['dirty']}")
    assert response is not None and response.status == 200
    assert page.locator("script[type=module]").count() == 1
    page.emulate_media(color_scheme="dark")
    page.goto(f"{site['url']}/ui/#/runs/{site['dirty']}")
    page.wait_for_selector("[data-testid=artifacts]")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    shot(page, site, "run-dark")
    # Every control is labelled.
    page.goto(f"{site['url']}/ui/#/experiments/{site['experiment']}")
    page.wait_for_selector("[data-testid=runs-grid][data-ready]")
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select')].filter((e) =>
            !e.labels?.length && !e.getAttribute('aria-label')).length"""
    )
    assert unlabelled == 0


def test_a_server_with_tokens_asks_for_one(page: Any, secured: str) -> None:
    page.goto(f"{secured}/ui/#/models")
    token = page.get_by_label("Token")
    token.fill("wrong")
    token.press("Enter")
    page.get_by_text("The server refused that token.").wait_for()
    page.get_by_label("Token").fill("s3cret")
    page.get_by_label("Token").press("Enter")
    page.wait_for_selector("tr[data-model='churn-model']")
    # Kept in the browser: the next page needs no token.
    page.goto(f"{secured}/ui/#/experiments")
    page.wait_for_selector("[data-testid=experiments]")


def header_box(page: Any) -> dict[str, float]:
    box: dict[str, float] = page.evaluate(
        "(() => { const r = document.querySelector('header.top').getBoundingClientRect();"
        " return {top: r.top, bottom: r.bottom, height: r.height}; })()"
    )
    return box


def test_nav_bar_stays_in_view_on_every_page(page: Any, site: dict[str, Any]) -> None:
    # A short window, so that the long pages scroll.
    page.set_viewport_size({"width": 1280, "height": 600})
    pages = {
        "experiments": ("#/experiments", "[data-testid=experiments]"),
        "runs": (f"#/experiments/{site['experiment']}", "[data-testid=runs-grid][data-ready]"),
        "run": (f"#/runs/{site['dirty']}", "[data-testid=metric-charts] path.series"),
        "compare": (
            f"#/compare?runs={site['runs'][0]},{site['runs'][1]}",
            "[data-testid=compare-charts] path.series",
        ),
        "models": ("#/models", "[data-testid=models]"),
        "model": ("#/models/churn-model", "[data-testid=timeline]"),
        "version": ("#/models/churn-model/versions/3", "[data-testid=version-run]"),
        "commit": (f"#/commits/{site['code_commit']}", "[data-testid=commit-message]"),
    }
    scrolled = []
    for name, (hash_, ready) in pages.items():
        page.goto(f"{site['url']}/ui/{hash_}")
        page.wait_for_selector(ready, state="attached")
        # Opening a page puts its top in view, the bar included.
        assert page.evaluate("window.scrollY") == 0, name
        assert header_box(page)["top"] == 0, name
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        if page.evaluate("window.scrollY") > 0:
            scrolled.append(name)
        box = header_box(page)
        assert box["top"] == 0 and box["height"] > 20, (name, box)
        # Nothing of the page is drawn over the bar.
        hit = page.evaluate(
            "document.elementFromPoint(640, document.querySelector('header.top')"
            ".getBoundingClientRect().bottom - 2).closest('header.top') !== null"
        )
        assert hit, name
        shot(page, site, f"nav-{name}")
        page.screenshot(path=str(site["shots"] / f"nav-{name}-viewport.png"))
    assert {"run", "compare", "model", "version"} <= set(scrolled)


def test_runs_table_shows_the_full_start_time(page: Any, site: dict[str, Any]) -> None:
    runs_page(page, site)
    cells = page.locator(".grid-row[data-run] [role=gridcell]:nth-child(4)")
    assert cells.count() == 8
    for i in range(cells.count()):
        text = cells.nth(i).inner_text()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text), text
        fits = cells.nth(i).evaluate("(e) => e.scrollWidth <= e.clientWidth")
        assert fits, text
    shot(page, site, "runs-started")


def chart_labels(page: Any, metric: str) -> tuple[list[str], list[str]]:
    """The y-axis and x-axis tick labels of one metric's chart."""
    labels: dict[str, list[str]] = page.evaluate(
        """(metric) => {
            const svg = document.querySelector(`[data-metric="${metric}"] svg`);
            const pick = (c) => [...svg.querySelectorAll(`text.${c}`)].map((t) => t.textContent);
            return {y: pick("y-tick"), x: pick("x-tick")};
        }""",
        metric,
    )
    return labels["y"], labels["x"]


def test_a_one_point_metric_is_drawn_around_its_value(page: Any, site: dict[str, Any]) -> None:
    page.goto(f"{site['url']}/ui/#/runs/{site['dirty']}")  # loss: 0.42 at step 0, alone
    page.wait_for_selector("[data-metric=loss] path.series", state="attached")
    ys, xs = chart_labels(page, "loss")
    assert "0.42" in ys and len(ys) >= 3
    assert xs == ["0"]  # no step -1 or 1 that was never logged
    marker = page.locator("[data-metric=loss] circle.point")
    assert marker.count() == 1
    box = marker.bounding_box()
    assert box is not None and box["width"] >= 6
    assert page.locator("[data-metric=loss] text.point-label").text_content() == "0.42"
    # On a log scale the axis still surrounds the value.
    page.get_by_label("Log scale").check()
    ys, _ = chart_labels(page, "loss")
    assert "0.42" in ys
    shot(page, site, "run-one-point")


def test_deleted_runs_are_listed_and_open(page: Any, site: dict[str, Any]) -> None:
    page.goto(f"{site['url']}/ui/#/experiments")
    deleted = page.locator(f"tr[data-experiment='{site['experiment']}'] td").nth(3)
    assert deleted.inner_text() == "1"
    deleted.get_by_role("link").click()
    page.wait_for_selector("[data-testid=runs-grid][data-ready]")
    wait_count(page, 1)
    assert names(page) == ["discarded"]
    assert page.get_by_label("Lifecycle").input_value() == "deleted"
    assert "lifecycle=deleted" in page.url
    shot(page, site, "runs-deleted")
    page.get_by_label("Lifecycle").select_option("all")
    wait_count(page, 9)
    row = page.locator(".grid-row[data-run]", has_text="discarded")
    assert row.locator("[data-testid=deleted]").inner_text() == "deleted"
    assert page.locator(".grid-row [data-testid=deleted]").count() == 1
    page.get_by_label("Lifecycle").select_option("active")
    wait_count(page, 8)
    assert "discarded" not in names(page)
    page.get_by_label("Lifecycle").select_option("deleted")
    wait_count(page, 1)
    page.get_by_role("link", name="discarded").click()
    notice = page.locator("[data-testid=deleted-notice]")
    notice.wait_for()
    assert "deleted" in notice.inner_text() and "gitml runs restore" in notice.inner_text()
    assert "deleted" in page.locator("h1").inner_text()
    page.wait_for_selector("[data-metric=loss] path.series", state="attached")
    shot(page, site, "run-deleted")


def test_metric_charts_offer_wall_clock_and_relative_time(page: Any, site: dict[str, Any]) -> None:
    page.goto(f"{site['url']}/ui/#/runs/{site['runs'][0]}")
    page.wait_for_selector("[data-metric=loss] path.series")
    loss = page.locator("[data-metric=loss] path.series")
    axis = page.get_by_label("X axis")
    assert axis.input_value() == "step"
    # The run logged a step every 1.5 s from 16:00:00 UTC.
    axis.select_option("wall")
    _, xs = chart_labels(page, "loss")
    assert xs and all(re.fullmatch(r"16:00:\d\d", x) for x in xs), xs
    assert "16:00:10" in xs and "16:00:20" in xs
    assert page.locator("[data-metric=loss] text.x-name").text_content() == "time (UTC)"
    assert loss.get_attribute("data-points") == "20"
    svg = page.locator("[data-metric=loss] svg")
    box = svg.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.98, box["y"] + box["height"] * 0.5)
    assert "@ 2025-11-24 16:00:28" in page.locator("[data-metric=loss] .legend span").inner_text()
    shot(page, site, "run-wall-time")
    axis.select_option("relative")
    _, xs = chart_labels(page, "loss")
    assert xs[0] == "0 s" and "10 s" in xs and "20 s" in xs and "30 s" not in xs
    assert page.locator("[data-metric=loss] text.x-name").text_content() == "relative time"
    assert loss.get_attribute("data-points") == "20"
    axis.select_option("step")
    _, xs = chart_labels(page, "loss")
    assert xs[:2] == ["0", "5"]

    # Compared runs started a minute apart: relative time lays their curves over each other.
    page.goto(f"{site['url']}/ui/#/compare?runs={site['runs'][0]},{site['runs'][1]}")
    page.wait_for_selector("[data-testid=compare-charts] [data-metric=loss] path.series")
    page.get_by_label("X axis").select_option("wall")
    _, xs = chart_labels(page, "loss")
    assert "16:00:00" in xs and "16:01:00" in xs
    page.get_by_label("X axis").select_option("relative")
    _, xs = chart_labels(page, "loss")
    assert xs[0] == "0 s" and "30 s" not in xs
    shot(page, site, "compare-relative-time")
