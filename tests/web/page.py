"""Drives netconn's page in a real browser (Debian's chromium, through
chromedriver, by Selenium) for the integration tests.

    python3 page.py BROWSER URL SCREENSHOT

BROWSER: chromium (Debian's, through chromedriver) or firefox (Debian's
firefox-esr, through geckodriver from the project's target/tools/bin).

Opens URL once, never reloads it, and prints one JSON line a second: the
per-state table as the page shows it ({"tcp": {"ESTABLISHED": 3}, ...},
zeros and "-" left out), the status line, the namespace tab's visibility.
A line on stdin asks for a screenshot now (to SCREENSHOT); `tab NAME`
clicks a tab; `filter TEXT` types into the connections filter; `rows`
prints the connections table's rows; end of stdin ends it.
"""

import json
import select
import sys
import time

import os

from selenium import webdriver
from selenium.webdriver.common.by import By


def table(driver):
    cells = driver.execute_script(
        """
        const out = {};
        const types = [...document.querySelectorAll('#states thead th')].map(t => t.textContent);
        for (const tr of document.querySelectorAll('#states tbody tr')) {
          const state = tr.querySelector('th').textContent;
          tr.querySelectorAll('td').forEach((td, i) => {
            const f = td.querySelector('.figure');
            if (f && f.textContent !== '0') {
              (out[types[i + 1]] = out[types[i + 1]] || {})[state] = Number(f.textContent);
            }
          });
        }
        return {header: types, table: out,
                status: document.getElementById('status').textContent,
                where: document.getElementById('where').textContent,
                namespaces_tab: !document.getElementById('namespaces-tab').hidden};
        """
    )
    return cells


def start(browser):
    if browser == "firefox":
        from selenium.webdriver.firefox.options import Options
        from selenium.webdriver.firefox.service import Service
        options = Options()
        options.binary_location = "/usr/bin/firefox-esr"
        options.add_argument("--headless")
        options.add_argument("--width=1400")
        options.add_argument("--height=1100")
        here = os.path.dirname(os.path.abspath(__file__))
        driver = os.path.join(here, "..", "..", "target", "tools", "bin", "geckodriver")
        return webdriver.Firefox(service=Service(driver), options=options)
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--no-first-run"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main():
    browser, url, shot = sys.argv[1], sys.argv[2], sys.argv[3]
    driver = start(browser)
    try:
        driver.get(url)
        print(json.dumps({"title": driver.title}), flush=True)
        deadline = time.time() + 240
        while time.time() < deadline:
            ready, _, _ = select.select([sys.stdin], [], [], 1.0)
            if ready:
                line = sys.stdin.readline()
                if not line:
                    return
                cmd = line.strip()
                if cmd.startswith("tab "):
                    driver.find_element(By.CSS_SELECTOR, f"nav button[data-view='{cmd[4:]}']").click()
                elif cmd.startswith("filter "):
                    box = driver.find_element(By.ID, "filter")
                    box.clear()
                    box.send_keys(cmd[7:])
                elif cmd == "rows":
                    rows = driver.execute_script(
                        "return [...document.querySelectorAll('#conns tbody tr')]"
                        ".map(tr => [...tr.children].map(td => td.textContent));")
                    print(json.dumps({"rows": rows}), flush=True)
                    continue
                else:
                    driver.save_screenshot(shot)
                    print(json.dumps({"screenshot": shot}), flush=True)
                    continue
            print(json.dumps(table(driver)), flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
