"""The HTML pages (``train``'s summary.html, ``diagnose``'s and ``compare``'s report.html): built
right, and shown right by a real headless Chromium (no console error, every image decoded)."""

import base64
import json
import os
from html.parser import HTMLParser

import pytest
from browser import find_chromium, open_page
from common import QUICK_DIAGNOSE, TINY
from PIL import Image

from pyro_vae.cli import main
from pyro_vae.html_page import GLOSSARY, render_page

#: ``.ci/run`` sets it: there a missing browser fails the tests instead of skipping them.
REQUIRE = "PYRO_VAE_REQUIRE_BROWSER"


class _Parts(HTMLParser):
    """The ids, links and image sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids, self.links, self.images = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])
        if tag == "img":
            self.images.append(attrs["src"])


def _parts(page: str) -> _Parts:
    parts = _Parts()
    parts.feed(page)
    return parts


def test_a_page_embeds_its_pictures_and_links_its_sections(tmp_path):
    Image.new("RGB", (7, 3), (200, 10, 10)).save(tmp_path / "red.png")
    text = (
        "# Title\n\nIntro.\n\n## First part\n\n| k-hat < 0.5 | other |\n|---:|---:|\n"
        "| 1 | 2 |\n\n## Second part\n\n![red](red.png)\n\n![gone](missing.png)\n"
    )
    page = render_page(text, tmp_path, "A <title>")
    parts = _parts(page)
    embedded, missing = parts.images
    prefix = "data:image/png;base64,"
    assert embedded.startswith(prefix)
    assert base64.b64decode(embedded[len(prefix) :]) == (tmp_path / "red.png").read_bytes()
    assert missing == "missing.png"  # left as written, so the browser test sees it broken
    assert {"first-part", "second-part", "glossary"} <= set(parts.links)
    assert set(parts.links) <= parts.ids  # every link lands on an element of the page
    assert "glossary-k-hat" in parts.links  # the column heading links to its meaning
    assert "<title>A &lt;title&gt;</title>" in page
    assert page.count("<script") == 0


def test_every_glossary_entry_has_an_anchor_of_its_own():
    page = render_page("# x\n", ".", "x")
    ids = _parts(page).ids
    assert {f"glossary-{t}" for t in ("elbo", "k-hat", "r-hat", "sbc", "ppc")} <= ids
    assert len([i for i in ids if i.startswith("glossary-")]) == len(GLOSSARY)


@pytest.fixture(scope="module")
def chromium():
    executable = find_chromium()
    if executable is None:
        if os.environ.get(REQUIRE):
            pytest.fail(f"{REQUIRE} is set but no Chromium is installed")
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium)")
    return executable


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A tiny run, its diagnosis and a two-method comparison: each folder with its page and
    the names of the pictures its page should show."""
    root = tmp_path_factory.mktemp("pages")
    run, diagnosis, comparison = root / "run", root / "diag", root / "cmp"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert main(["diagnose", str(run), *QUICK_DIAGNOSE, "--out", str(diagnosis)]) == 0
    compare = ["compare", "--preset", "quick", "--methods", "vae", "mle-pairs", *TINY[:-1]]
    assert main([*compare, "--num-test", "20", "--out", str(comparison), "--quiet"]) == 0
    return {
        "train": (run / "summary.html", json.loads((run / "metrics.json").read_text())["pictures"]),
        "diagnose": (
            diagnosis / "report.html",
            list(json.loads((diagnosis / "diagnostics.json").read_text())["pictures"].values()),
        ),
        "compare": (
            comparison / "report.html",
            json.loads((comparison / "results.json").read_text())["pictures"],
        ),
    }


@pytest.mark.parametrize("command", ["train", "diagnose", "compare"])
def test_each_page_renders_in_chromium_with_every_image(pages, chromium, command, tmp_path):
    page, pictures = pages[command]
    shot = tmp_path / f"{command}.png"
    seen = open_page(chromium, page, shot)
    assert seen.errors == []
    assert seen.title.startswith(f"pyro-vae {command}")
    assert sorted(alt for _, _, alt in seen.images) == sorted(pictures)
    for loaded, width, alt in seen.images:
        with Image.open(page.parent / alt) as picture:
            assert loaded and width == picture.width, alt
    with Image.open(shot) as screenshot:  # the whole page, pictures included
        assert screenshot.width >= 1000 and screenshot.height > 1200


def test_the_browser_check_sees_a_broken_page(chromium, tmp_path):
    """The check above can fail: a missing picture and a console error are both seen."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><title>broken</title><img src="missing.png" alt="gone">'
        '<script>console.error("seen")</script>'
    )
    seen = open_page(chromium, page, tmp_path / "broken.png")
    assert "seen" in seen.errors and any("ERR_FILE_NOT_FOUND" in e for e in seen.errors)
    assert seen.images == [(True, 0, "gone")]
