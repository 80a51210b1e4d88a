"""The dashboard in a real browser: Debian's chromium, headless, driven by Selenium, against the
real daemon (localnet, a Modbus meter simulator on an accelerated clock so a 1-minute interval
closes every few seconds). The page loads with no console error, logs in through the form (the
token ends up in the HttpOnly cookie), lists the meter, and a newly closed interval appears in
its chart without a reload; an operation opens with its signatures; the page fits a phone."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from gridnode.meters.service import MetersSubsystem
from gridnode.testing import AcceleratedClock
from simulators.chain.localnet import Localnet
from simulators.meters.fleet import MeterFleet
from tests.api.harness import ApiNode
from tests.configs import localnet_node, modbus_meter, tcp_bus
from tests.net import pick_free_port

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
FACTOR = 15             # meter seconds per wall second: a 1-minute interval every 4 s
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="apt-get install chromium chromium-driver")


def browser(profile: Path) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                 "--window-size=1280,1500"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(str(DRIVER)))


def patient(driver: Any, timeout_s: float, poll_s: float = 0.5) -> WebDriverWait[Any]:
    """A wait that looks again when the page re-rendered what it was reading: the dashboard
    replaces its tables and cards as fresh data arrives, under the test's feet."""
    return WebDriverWait(driver, timeout_s, poll_s,
                         ignored_exceptions=(StaleElementReferenceException,))


def session(url: str, token: str, shots: Path) -> dict[str, Any]:
    """The whole browser session (Selenium is synchronous: it runs in a thread while the
    daemon runs in the test's event loop)."""
    driver = browser(shots / "profile")
    wait = patient(driver, 30)
    out: dict[str, Any] = {}
    try:
        driver.get(url + "/")
        form = wait.until(lambda d: d.find_element(By.ID, "login-view"))
        wait.until(lambda d: form.is_displayed())
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'article[data-meter="house"]'))
        out["cookie"] = driver.get_cookie("gridnode_token")
        out["page_sees_cookie"] = driver.execute_script("return document.cookie")
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
        def count(d: Any) -> int | None:
            n = d.execute_script("return document.querySelector("
                                 "'article[data-meter=\"house\"] svg.chart')?.dataset.count")
            return None if n is None else int(n)

        first = wait.until(lambda d: count(d) is not None) and count(driver)
        loads = driver.execute_script("return performance.getEntriesByType('navigation').length")

        def more(d: Any) -> int | bool:
            n = count(d)
            return n if n is not None and n > first else False
        out["intervals"] = (first, patient(driver, 60, 0.2).until(more))
        out["same_page"] = driver.execute_script(
            "return performance.getEntriesByType('navigation').length") == loads and \
            driver.execute_script("return window.performance.timeOrigin") is not None
        out["power"] = wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, 'article[data-meter="house"] .power').text)

        # an operation: its detail lists the signatures
        op = patient(driver, 60, 0.2).until(lambda d: next(
            (int(r.get_attribute("data-op")) for r in d.find_elements(
                By.CSS_SELECTOR, "#operations tbody tr[data-op]") if "finalized" in r.text),
            False))
        out["op"] = op
        driver.save_screenshot(str(shots / "dashboard.png"))
        wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, f'#operations tbody tr[data-op="{op}"]').click() is None)
        sig = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#detail[open] tr.signature"))
        out["signature"] = sig.find_element(By.CSS_SELECTOR, "td").text
        driver.save_screenshot(str(shots / "detail.png"))
        driver.find_element(By.CSS_SELECTOR, "#detail .close").click()

        driver.set_window_size(390, 844)            # a phone
        time.sleep(0.5)
        out["overflow_px"] = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth")
        driver.save_screenshot(str(shots / "phone.png"))
        out["console"] = driver.get_log("browser")
    except Exception:
        driver.save_screenshot(str(shots / "failure.png"))
        print("browser console:", driver.get_log("browser"), "\nstep:", out)
        raise
    finally:
        driver.quit()
    return out


async def test_the_dashboard_in_a_real_browser(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    clock = AcceleratedClock(factor=FACTOR)
    build = MetersSubsystem.from_config
    monkeypatch.setattr(MetersSubsystem, "from_config", classmethod(
        lambda cls, *a, **kw: build(*a, **{**kw, "clock": clock})))
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        node = ApiNode(tmp_path, localnet_node(net, tmp_path / "state"),
                       {"meters": {"buses": [tcp_bus(pick_free_port(),
                                                     modbus_meter("house", 1, "sdm630"),
                                                     poll_interval_s=1, timeout_s=0.5)]},
                        "intervals": {"minutes": 1}})
        async with MeterFleet.from_config(node.config, clock=clock), node:
            out = await asyncio.to_thread(session, node.url, node.token("monitor", "installer"),
                                          tmp_path)
            async with await node.db() as db:
                sigs = {r[0] for r in await db.fetchall(
                    "SELECT a.signature FROM tx_attempts a JOIN tx_attempt_operations t "
                    "ON t.attempt_id = a.id WHERE t.operation_id = ?", (out["op"],))}
                closed = await db.fetchall("SELECT meter_id, operation_id, data FROM events "
                                           "WHERE type = 'interval.closed' ORDER BY id")
                intervals = await db.fetchall(
                    "SELECT meter_id, interval_start FROM intervals ORDER BY created_at_ms")
    # each interval closed is in the event log (what the page is told), with its operation
    assert [(r[0], json.loads(r[2])["interval_start"]) for r in closed] == \
        [tuple(r) for r in intervals]
    assert all(r[1] is not None for r in closed)
    severe = [e for e in out["console"] if e["level"] == "SEVERE"]
    assert severe == [], severe
    assert out["cookie"]["httpOnly"] is True and out["cookie"]["sameSite"] == "Strict"
    assert "gridnode_token" not in out["page_sees_cookie"]
    first, later = out["intervals"]
    assert later > first and out["same_page"], out
    assert out["power"].endswith(" W")
    assert out["signature"] in sigs
    assert out["overflow_px"] <= 0, out["overflow_px"]
    for shot in ("dashboard.png", "detail.png", "phone.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
    print(f"screenshots in {tmp_path}")
