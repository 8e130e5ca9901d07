"""A report page in a real headless browser (Debian's chromium): screenshot and checks.

`check_page` asks Chromium itself, after the page has loaded, which images failed to load
(`complete` and a natural width, as the browser decoded them) and where every link points;
links to files must resolve. It loads a copy of the page, beside it, with a few lines of
script added at the end (so relative images and links resolve as in the page itself), and
reads the answer from `--dump-dom`. The flags keep Chromium off the network.

    python -m resbench.report.browser reports/index.html [shot.png]
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
PROBE = """<script>window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "resbench-check";
  pre.textContent = JSON.stringify({
    images: [...document.images].map(i => ({src: i.getAttribute("src"), loaded: i.complete && i.naturalWidth > 0})),
    links: [...document.links].map(a => a.href)});
  document.body.appendChild(pre);
});</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str, timeout: float = 120) -> str:
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="resbench-chromium-") as profile:
        proc = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)
    return proc.stdout


def check_page(page: str | Path) -> dict:
    """{"images": [...], "broken_images": [...], "links": [...], "broken_links": [...], "external_links": [...]}"""
    page = Path(page).resolve()
    probe = page.with_name(f".{page.stem}.check.html")
    text = page.read_text()
    probe.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE)
    try:
        dom = _chromium("--virtual-time-budget=15000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r'<pre id="resbench-check">(.*?)</pre>', dom, re.S)
    if not found:
        raise RuntimeError(f"chromium did not finish loading {page}")
    seen = json.loads(html.unescape(found.group(1)))
    broken_links, external = [], []
    for href in seen["links"]:
        url = urlparse(href)
        if url.scheme != "file":
            external.append(href)
        elif Path(unquote(url.path)) != probe and not Path(unquote(url.path)).exists():
            broken_links.append(href.replace(page.parent.as_uri() + "/", ""))
    return {"images": [i["src"] for i in seen["images"]],
            "broken_images": [i["src"] for i in seen["images"] if not i["loaded"]],
            "links": seen["links"], "broken_links": broken_links, "external_links": external}


def screenshot(page: str | Path, png: str | Path, width: int = 1400, height: int = 2600) -> Path:
    """A PNG of the page as Chromium renders it."""
    png = Path(png).resolve()
    _chromium(f"--window-size={width},{height}", f"--screenshot={png}", Path(page).resolve().as_uri())
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot of {page}")
    return png


if __name__ == "__main__":
    target = Path(sys.argv[1])
    result = check_page(target)
    print(f"{len(result['images'])} images, broken: {result['broken_images'] or 'none'}; "
          f"{len(result['links'])} links, broken: {result['broken_links'] or 'none'}")
    print(f"screenshot: {screenshot(target, sys.argv[2] if len(sys.argv) > 2 else target.with_suffix('.png'))}")
