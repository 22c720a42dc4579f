"""Render an HTML page in headless Chromium and count its images that loaded (report tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.length > 0 && imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-images-ok", ok ? "yes" : "no");
});
</script>"""

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (Debian: apt-get install -y --no-install-recommends chromium)")


def assert_images_render(html_path: Path, tmp_path: Path, *, n_images: int) -> None:
    """Open ``html_path`` (plus a probe script) in headless Chromium and read back, through
    the DOM, that it holds ``n_images`` images and that every one of them decoded."""
    assert CHROMIUM is not None
    page = tmp_path / "probe.html"
    page.write_text(html_path.read_text().replace("</body>", IMAGE_CHECK + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f'data-images="{n_images}"' in out.stdout
    assert 'data-images-ok="yes"' in out.stdout
