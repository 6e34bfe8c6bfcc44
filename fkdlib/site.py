"""A browsable report of a reproduction: ``fkd site`` builds a static site under ``build/site/``.

From what ``fkd reproduce`` wrote (``results/`` and ``figures/``) it makes:

- ``index.html``: every notebook with its status and runtime, the count of verdicts, links;
- ``notebooks/NN_name.html``: each executed notebook as HTML (nbconvert's lab template), its
  figures inline;
- ``claims.html``: every claim of every notebook, one row each, linked to the section of its
  notebook where the claims are checked;
- ``gallery.html``: every figure (PNG shown, PDF and SVG linked), grouped by notebook.

The pages use relative links only, so the folder can be opened from disk, copied to a web
server or published as it is. :func:`broken_links` lists any link or image that does not
resolve (the test suite checks a built site with it); :func:`screenshot` renders a page in
headless Chromium (Debian's ``chromium`` package) to look at it as a reader would.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd

from .errors import ConfigError, MissingDataError
from .io import atomic_write_bytes, atomic_write_text

CLAIMS_SECTION = "Claims"  # the heading of the section where each notebook checks its claims
STATUS_COLORS = {"holds": "#1b7837", "contradicted": "#b2182b", "not significant": "#6b6b6b",
                 "untestable": "#8c510a", "not assessed": "#6b6b6b", "failed gate": "#b35806"}
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
nav a { margin-right: 1.2rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.5rem; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; }
.status { font-weight: 600; white-space: nowrap; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr));
           gap: 1.2rem; }
figure { margin: 0; border: 1px solid #ddd; padding: 0.5rem; background: #fff; }
figure img { width: 100%; height: auto; }
figcaption { font-size: 0.85rem; margin-top: 0.3rem; }
"""


@dataclass(frozen=True)
class NotebookPage:
    """One executed notebook as the site shows it."""

    name: str
    status: str
    runtime_s: float | None
    html_path: str  # relative to the site root
    figures: tuple[Path, ...]
    claims: pd.DataFrame


def _page(title: str, body: str) -> str:
    nav = ('<nav><a href="index.html">Overview</a><a href="claims.html">Claims</a>'
           '<a href="gallery.html">Figures</a></nav>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body>{nav}\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _status_cell(status: str) -> str:
    color = STATUS_COLORS.get(status, "#222")
    return f'<td class="status" style="color:{color}">{html.escape(status)}</td>'


def _anchor(heading: str) -> str:
    """The id nbconvert gives a Markdown heading (spaces become hyphens)."""
    return heading.strip().replace(" ", "-")


def _notebook_html(executed: Path) -> str:
    """The executed notebook as a standalone HTML page (figures are embedded PNGs)."""
    import nbformat
    from nbconvert import HTMLExporter

    try:
        notebook = nbformat.read(executed, as_version=4)
    except (OSError, ValueError) as error:  # nbformat raises ValueError subclasses on bad JSON
        raise MissingDataError(f"cannot read the executed notebook {executed}: {error}") from None
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(notebook)
    return body


def _read_run(results: Path) -> tuple[str, float | None]:
    try:
        record = json.loads((results / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "not recorded", None
    return str(record.get("status", "not recorded")), record.get("runtime_s")


def collect_pages(results_dir: Path, figures_dir: Path) -> list[NotebookPage]:
    """Every notebook that ``fkd reproduce`` executed into ``results_dir``, in order."""
    pages = []
    for folder in sorted(p for p in results_dir.glob("[0-9][0-9]_*") if p.is_dir()):
        executed = folder / f"{folder.name}.ipynb"
        if not executed.exists():
            continue
        status, runtime = _read_run(folder)
        claims_path = folder / "claims.csv"
        claims = pd.read_csv(claims_path) if claims_path.exists() else pd.DataFrame()
        figures = tuple(sorted((figures_dir / folder.name).glob("*.png")))
        pages.append(NotebookPage(folder.name, status, runtime, f"notebooks/{folder.name}.html",
                                  figures, claims))
    return pages


def _index(pages: Sequence[NotebookPage], profile: str) -> str:
    claims = pd.concat([p.claims for p in pages if not p.claims.empty], ignore_index=True) \
        if any(not p.claims.empty for p in pages) else pd.DataFrame(columns=["status"])
    counts = claims["status"].value_counts()
    verdicts = ", ".join(f"{html.escape(str(s))}: {n}" for s, n in counts.items()) or "none"
    rows = []
    for page in pages:
        runtime = "" if page.runtime_s is None else f"{page.runtime_s:.0f}"
        rows.append(f'<tr><td><a href="{page.html_path}">{html.escape(page.name)}</a></td>'
                    f"{_status_cell(page.status)}<td>{runtime}</td><td>{len(page.claims)}</td>"
                    f"<td>{len(page.figures)}</td></tr>")
    body = (f"<p>The executed notebooks of the <code>{html.escape(profile)}</code> profile, the "
            f"claims they check and the figures they draw. Verdicts: {verdicts}.</p>\n"
            "<table><tr><th>notebook</th><th>status</th><th>runtime (s)</th><th>claims</th>"
            "<th>figures</th></tr>\n" + "\n".join(rows) + "</table>\n"
            '<p><a href="claims.html">Every claim</a> · <a href="gallery.html">Every figure</a>'
            "</p>")
    return _page("fkdlib reproduction report", body)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return html.escape(str(value))


def _claims_page(pages: Sequence[NotebookPage]) -> str:
    columns = ("id", "statement", "status", "effect", "ci_low", "ci_high", "mde", "reason")
    rows = []
    for page in pages:
        link = f"{page.html_path}#{_anchor(CLAIMS_SECTION)}"
        for claim in page.claims.to_dict("records"):
            cells = [f'<td><a href="{link}">{html.escape(page.name)}</a></td>']
            for column in columns:
                value = claim.get(column, "")
                cells.append(_status_cell(str(value)) if column == "status"
                             else f"<td>{_fmt(value)}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{c}</th>" for c in ("notebook", *columns))
    body = ("<p>Each claim compares two models on the same test data; the interval resamples "
            "training seeds and identities. The notebook link opens the section where the "
            "claim is checked.</p>\n"
            f"<table><tr>{header}</tr>\n" + "\n".join(rows) + "</table>")
    return _page("Claims checked", body)


def _gallery_page(pages: Sequence[NotebookPage], figure_links: dict[Path, str]) -> str:
    sections = []
    for page in pages:
        if not page.figures:
            continue
        items = []
        for png in page.figures:
            src = figure_links[png]
            others = " · ".join(f'<a href="{src[:-4]}.{ext}">{ext.upper()}</a>'
                                for ext in ("pdf", "svg") if png.with_suffix(f".{ext}").exists())
            items.append(f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(png.stem)}"'
                         f' loading="lazy"></a><figcaption>{html.escape(png.stem)}'
                         f"{' · ' + others if others else ''}</figcaption></figure>")
        sections.append(f'<h2 id="{page.name}"><a href="{page.html_path}">'
                        f"{html.escape(page.name)}</a></h2>\n"
                        f'<div class="gallery">{"".join(items)}</div>')
    return _page("Figures", "\n".join(sections) or "<p>No figures.</p>")


def build_site(results_dir: str | os.PathLike = "results",
               figures_dir: str | os.PathLike = "figures",
               out_dir: str | os.PathLike = "build/site", profile: str = "default") -> Path:
    """Build the static site from a reproduction's outputs; return the path of ``index.html``.

    Raises:
        MissingDataError: ``results_dir`` holds no executed notebook (run ``fkd reproduce``).
    """
    results_dir, figures_dir, out_dir = Path(results_dir), Path(figures_dir), Path(out_dir)
    pages = collect_pages(results_dir, figures_dir)
    if not pages:
        raise MissingDataError(
            f"no executed notebook under {results_dir} (expected {results_dir}/NN_name/"
            "NN_name.ipynb); run `fkd reproduce` first or pass --results-dir")
    for page in pages:
        atomic_write_text(out_dir / page.html_path,
                          _notebook_html(results_dir / page.name / f"{page.name}.ipynb"))
    figure_links = {}
    for page in pages:
        for png in page.figures:
            for source in (png, png.with_suffix(".pdf"), png.with_suffix(".svg")):
                if source.exists():
                    target = out_dir / "figures" / page.name / source.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
            figure_links[png] = f"figures/{page.name}/{png.name}"
    atomic_write_text(out_dir / "claims.html", _claims_page(pages))
    atomic_write_text(out_dir / "gallery.html", _gallery_page(pages, figure_links))
    index = out_dir / "index.html"
    atomic_write_text(index, _index(pages, profile))
    return index


class _References(HTMLParser):
    """Collects ``href``/``src`` attributes and element ids of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key == "id":
                self.ids.add(value)
            elif (key == "href" and tag == "a") or (key == "src" and tag == "img"):
                self.links.append(value)


def _parse(page: Path) -> _References:
    parser = _References()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _local_links(site: Path) -> Iterator[tuple[Path, str]]:
    for page in sorted(site.rglob("*.html")):
        for link in _parse(page).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("data:"):
                continue  # external pages and embedded images are not the site's to check
            yield page, link


def broken_links(site_dir: str | os.PathLike) -> list[str]:
    """``page: link`` for every relative link or image in the site whose file, or whose
    ``#anchor`` in that file, does not exist."""
    site = Path(site_dir)
    broken, ids = [], {}
    for page, link in _local_links(site):
        parts = urlsplit(link)
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not target.is_file():
            broken.append(f"{page.relative_to(site)}: {link}")
            continue
        if parts.fragment and target.suffix == ".html":
            if target not in ids:
                ids[target] = _parse(target).ids
            # a browser tries the fragment as written, then percent-decoded (nbconvert writes
            # percent-encoded ids for headings with non-ASCII characters)
            if not {parts.fragment, unquote(parts.fragment)} & ids[target]:
                broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    return broken


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable on ``PATH``, if any."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def screenshot(page: str | os.PathLike, out_png: str | os.PathLike,
               size: tuple[int, int] = (1280, 1000), timeout_s: float = 120) -> Path:
    """Render ``page`` in headless Chromium and save a PNG of the window.

    Raises:
        ConfigError: no Chromium is installed (``apt-get install chromium``), or it failed.
    """
    chromium = find_chromium()
    if chromium is None:
        raise ConfigError("no Chromium found on PATH (looked for "
                          f"{', '.join(CHROMIUM_NAMES)}); install it, e.g. "
                          "`apt-get install chromium`, to take screenshots")
    page, out_png = Path(page).resolve(), Path(out_png)
    if not page.is_file():
        raise MissingDataError(f"no page to screenshot at {page}; build the site first")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fkd-chromium-") as profile_dir:
        shot = Path(profile_dir) / "shot.png"
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                   "--hide-scrollbars", f"--user-data-dir={profile_dir}",
                   f"--window-size={size[0]},{size[1]}", f"--screenshot={shot}",
                   page.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ConfigError(f"Chromium did not finish the screenshot of {page} within "
                              f"{timeout_s:.0f} s") from None
        if done.returncode != 0 or not shot.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"Chromium could not screenshot {page} (exit "
                              f"{done.returncode}): {last}")
        atomic_write_bytes(out_png, shot.read_bytes())
    return out_png


def add_site_parser(subparsers) -> None:
    """``fkd site``."""
    parser = subparsers.add_parser(
        "site", help="build a static HTML report (notebooks, claims, figures) under build/site/")
    parser.add_argument("--results-dir", default="results",
                        help="where `fkd reproduce` wrote the results (default: results)")
    parser.add_argument("--figures-dir", default="figures",
                        help="where it wrote the figures (default: figures)")
    parser.add_argument("--out", default="build/site", help="the site folder (default: build/site)")
    parser.add_argument("--screenshot", default=None, metavar="PNG",
                        help="also render index.html in headless Chromium and save a PNG")
    parser.set_defaults(handler=_site_command)


def _site_command(args) -> int:
    index = build_site(args.results_dir, args.figures_dir, args.out,
                       profile=_profile_of(Path(args.results_dir)))
    broken = broken_links(args.out)
    if broken:
        raise MissingDataError(f"the site under {args.out} has {len(broken)} broken link(s), "
                               f"first: {broken[0]}")
    print(f"site written to {index.parent} (open {index})")
    if args.screenshot:
        print(f"screenshot saved to {screenshot(index, args.screenshot)}")
    return 0


def _profile_of(results_dir: Path) -> str:
    """The profile named in the first executed notebook's run record (``default`` if none)."""
    for record in sorted(results_dir.glob("[0-9][0-9]_*/run.json")):
        try:
            return str(json.loads(record.read_text(encoding="utf-8"))["parameters"]["profile"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            continue
    return "default"
