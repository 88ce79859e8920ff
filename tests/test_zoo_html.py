"""report.html in a real browser: headless Chromium (Debian's package) renders every row, and
clicking a column header sorts the table (numbers as numbers, empty cells last)."""
from __future__ import annotations

import os

import pytest

from zoo_support import CHROMEDRIVER, CHROMIUM, headless_chromium, invoke, read_report, tiny_zoo

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    if os.environ.get("CI"):  # .ci/run installs them; a CI run without them is a broken CI
        raise RuntimeError(f"{CHROMIUM} / {CHROMEDRIVER} missing: apt-get install chromium chromium-driver")
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
                allow_module_level=True)
pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    tiny_zoo(folder / "src", count=4)
    result = invoke("zoo", folder / "src", "-o", folder / "out", "--strategy", "decompose,keep", "--quiet")
    assert result.exit_code == 1
    driver = headless_chromium(str(folder / "profile"))
    try:
        driver.get((folder / "out" / "report.html").as_uri())
        yield driver, read_report(folder / "out")
    finally:
        driver.quit()


def header(driver, name):
    (th,) = [th for th in driver.find_elements(By.CSS_SELECTOR, "#results thead th") if th.text.strip(" ▲▼") == name]
    return th


def column(driver, name, attribute=None):
    """The cells of a column, top to bottom: their text, or an attribute of each."""
    names = [th.text.strip(" ▲▼") for th in driver.find_elements(By.CSS_SELECTOR, "#results thead th")]
    cells = [row.find_elements(By.TAG_NAME, "td")[names.index(name)]
             for row in driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")]
    return [c.get_attribute(attribute) if attribute else c.text for c in cells]


def test_every_model_and_strategy_has_a_row(page):
    driver, report = page
    rows = driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(rows) == len(report["entries"]) == 12
    assert sorted({r.get_attribute("data-model") for r in rows}) == sorted(report["catalogue"])
    assert column(driver, "Model") == [e["model"] for e in report["entries"]]
    assert "6 model(s), 6 passed, 0 failed, 2 not verifiable, 4 error(s)" in driver.find_element(By.ID, "summary").text
    errors = driver.find_element(By.ID, "errors").text
    assert "string_size decompose: " in errors and "not a valid ONNX model" in errors and "garbage keep:" in errors
    # per site: exact or approximate and the drift right after it
    assert "norm exact " in rows[2].text and "notes [1]" in rows[2].text


def test_clicking_a_header_sorts_numbers_and_again_reverses(page):
    driver, report = page
    header(driver, "Max rel").click()
    values = column(driver, "Max rel")
    numbers = [float(v) for v in values if v != "-"]
    assert numbers == sorted(numbers) and len(numbers) == report["passed"]
    assert values[len(numbers):] == ["-"] * (len(values) - len(numbers))  # no value: last
    assert header(driver, "Max rel").get_attribute("aria-sort") == "ascending"
    header(driver, "Max rel").click()
    values = column(driver, "Max rel")
    assert [float(v) for v in values[:len(numbers)]] == sorted(numbers, reverse=True)
    assert header(driver, "Max rel").get_attribute("aria-sort") == "descending"


def test_clicking_a_text_header_sorts_by_text(page):
    driver, _ = page
    header(driver, "Result").click()
    results = column(driver, "Result")
    assert results == sorted(results) and results[0] == "ERROR" and results[-1] == "PASSED"
    header(driver, "Size").click()
    sizes = column(driver, "Size", "data-value")
    known = [int(s) for s in sizes if s is not None]
    assert known == sorted(known) and sizes[len(known):] == [None] * (len(sizes) - len(known))
