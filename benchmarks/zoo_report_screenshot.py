"""A screenshot of report.html as a person sees it: results/zoo_report.png.

Runs ``lrnconv zoo`` on a folder holding the five built-in replicas at reduced width (as
ONNX files), an LRN whose ``size`` is a string (the parser crashes) and a file that is not
ONNX, with ``decompose`` (exact) and ``fold`` (approximate), opens report.html in headless
Chromium (Debian's package, through tests/zoo_support.py's launcher), sorts it by the
latency ratio with a click on its header, and saves the page.

    python benchmarks/zoo_report_screenshot.py [--out results/zoo_report.png]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import onnx

from _common import RESULTS, ROOT

sys.path.insert(0, os.path.join(ROOT, "tests"))
from zoo_support import headless_chromium, string_size_lrn  # noqa: E402

from lrnconv.models import BUILTIN, build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(RESULTS, "zoo_report.png"))
    args = parser.parse_args()
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "models")
        os.makedirs(source)
        for name in BUILTIN:
            onnx.save(build(name, variant="small"), os.path.join(source, name + ".onnx"))
        onnx.save(string_size_lrn(), os.path.join(source, "string_size.onnx"))
        with open(os.path.join(source, "not_a_model.onnx"), "wb") as f:
            f.write(b"\x00garbage")
        out = os.path.join(tmp, "out")
        subprocess.run([sys.executable, "-m", "lrnconv", "zoo", source, "-o", out, "--strategy", "decompose,fold",
                        "--quiet"], cwd=ROOT, check=False)
        driver = headless_chromium(os.path.join(tmp, "profile"))
        try:
            driver.set_window_size(1700, 1250)
            driver.get("file://" + os.path.join(out, "report.html"))
            [th for th in driver.find_elements(By.CSS_SELECTOR, "#results thead th")
             if th.text.strip() == "Latency ratio"][0].click()
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
