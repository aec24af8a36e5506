"""One self-contained HTML page from a report's Markdown: what ``report.html`` (``diagnose``,
``compare``) and ``summary.html`` (``train``) are.

The Markdown is the one the ``.md`` report holds, turned into HTML by Python-Markdown (tables,
heading anchors); every picture it shows is embedded as a ``data:`` URI, so the page can be
mailed or moved on its own. A table of contents links to every section, each column heading that
names a quantity links to its entry in the glossary at the end ("what each number means"), and
the page has no script, so it shows the same in any browser.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path
from xml.etree import ElementTree

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from .checkpoint import write_text

#: What each number in the reports means, by the words a table heading starts with.
GLOSSARY: dict[str, str] = {
    "ELBO": "Evidence lower bound, E_q[log p(x, z) − log q(z | x)], in nats per image: "
    "a lower bound on log p(x); higher is better.",
    "log p(x)": "Test log-likelihood estimated by importance sampling with q(z | x) as the "
    "proposal (K draws per image); higher is better. PSIS: the same with Pareto-smoothed "
    "weights.",
    "test NLL": "−log p(x) on the test images, importance-sampled: lower is better.",
    "recon.": "Expected reconstruction term E_q[log p(x | z)] of the ELBO.",
    "KL": "KL(q(z | x) ‖ p(z)), the ELBO's price for moving q away from the prior, in nats.",
    "k-hat": "Pareto k̂ of the importance weights (Vehtari et al.): below 0.5 the "
    "importance-sampled log p(x) is reliable, above 0.7 q misses part of the posterior.",
    "active units": "Latent dimensions whose posterior mean varies across images "
    "(Cov_x E_q[z] > 0.01, Burda et al.): the others have collapsed to the prior.",
    "R-hat": "Rank-normalised split R-hat of the NUTS chains: above 1.01 they have not mixed.",
    "ESS": "Effective sample size of the NUTS draws (bulk: the centre, tail: the 5 % and 95 % "
    "quantiles).",
    "ELPD": "Expected log predictive density: the sum over test images of log p(x); "
    "a difference below about two standard errors does not separate two fits.",
    "SBC": "Simulation-based calibration: the rank of the true z among draws from q is uniform "
    "when q is calibrated; min p is the smallest p-value of the uniformity tests, spread is "
    "the ranks' spread relative to uniform (above 1: q over-confident, below 1: "
    "under-confident).",
    "coverage": "Share of NUTS draws inside q's central 50 % and 90 % intervals: 0.5 and 0.9 "
    "for a calibrated q.",
    "PPC": "Posterior predictive check: the share of test images whose Bayesian p-value of a "
    "statistic is below 0.025 or above 0.975; few when the model fits (such p-values gather "
    "near 0.5, so a good fit stays under about 5 %).",
    "fit time": "Wall-clock seconds of the fit on this machine.",
    "nats": "Natural-log units: one nat is log e; per image unless said otherwise.",
}

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1f24; }
table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; }
th { background: #f6f8fa; } th a { color: inherit; text-decoration: underline dotted; }
img { max-width: 100%; border: 1px solid #eee; }
nav.toc { background: #f6f8fa; padding: .5rem 1rem; border-radius: 6px; }
code { background: #f6f8fa; padding: 0 .2rem; }
dt { font-weight: 600; margin-top: .5rem; }
"""


def _anchor(term: str) -> str:
    return "glossary-" + re.sub(r"[^a-z0-9]+", "-", term.lower()).strip("-")


class _EmbedImages(Treeprocessor):
    """Every ``<img>`` whose source is a file beside the report becomes a ``data:`` URI."""

    def __init__(self, md: markdown.Markdown, folder: Path) -> None:
        super().__init__(md)
        self.folder = folder

    def run(self, root: ElementTree.Element) -> None:
        for image in root.iter("img"):
            path = self.folder / image.get("src", "")
            if "://" in image.get("src", "") or not path.is_file():
                continue  # left as it is: a missing picture shows as broken, never hidden
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            image.set("src", f"data:{kind};base64,{data}")


class _LinkTerms(Treeprocessor):
    """A table heading that starts with a glossary term links to its entry."""

    def run(self, root: ElementTree.Element) -> None:
        for heading in root.iter("th"):
            text = "".join(heading.itertext()).strip()
            term = next((t for t in GLOSSARY if text.lower().startswith(t.lower())), None)
            if term is None or len(heading) > 0:
                continue
            link = ElementTree.SubElement(heading, "a", href=f"#{_anchor(term)}")
            link.set("title", GLOSSARY[term])
            link.text, heading.text = heading.text, None


class _ReportPage(Extension):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Markdown's name)
        md.treeprocessors.register(_EmbedImages(md, self.folder), "embed_images", 5)
        md.treeprocessors.register(_LinkTerms(md), "link_terms", 4)


def _glossary() -> str:
    entries = "".join(
        f'<dt id="{_anchor(term)}">{html.escape(term)}</dt><dd>{html.escape(meaning)}</dd>'
        for term, meaning in GLOSSARY.items()
    )
    return f'<h2 id="glossary">What the numbers mean</h2><dl>{entries}</dl>'


def _after_title(body: str, contents: str) -> str:
    """``contents`` put under the page's first heading (at the top if it has none)."""
    end = body.find("</h1>")
    if end < 0:
        return f"{contents}\n{body}"
    end += len("</h1>")
    return f"{body[:end]}\n{contents}{body[end:]}"


def render_page(text: str, folder: str | Path, title: str) -> str:
    """The HTML page of the Markdown ``text``, its pictures read from ``folder``."""
    converter = markdown.Markdown(
        extensions=["tables", "toc", _ReportPage(Path(folder))],
        extension_configs={"toc": {"toc_depth": "2-3"}},
    )
    body = converter.convert(text)
    contents = (  # Python-Markdown's table of contents (a <div> of links), then the glossary
        f'<nav class="toc"><strong>Contents</strong>{converter.toc}'
        '<a href="#glossary">What the numbers mean</a></nav>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        f"{_after_title(body, contents)}\n{_glossary()}\n</body></html>\n"
    )


def write_page(path: str | Path, text: str, title: str) -> None:
    """Write :func:`render_page` of ``text`` to ``path`` (atomically), pictures from its
    folder."""
    path = Path(path)
    write_text(path, render_page(text, path.parent, title))
