"""``fkd site``: a static report whose every link and image resolves."""

import base64
import io
import json
import re

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest

from fkdlib.cli import main
from fkdlib.errors import MissingDataError
from fkdlib.report.figures import save_figure
from fkdlib.site import broken_links, build_site, find_chromium, screenshot


def _png(color: str) -> bytes:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1], color=color)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    plt.close(fig)
    return buffer.getvalue()


def _reproduction(root, names=("01_first", "02_second")):
    """What ``fkd reproduce`` leaves: executed notebooks with a Claims section and an inline
    figure, claims.csv, run.json, and PNG/PDF/SVG figures."""
    results, figures = root / "results", root / "figures"
    for number, name in enumerate(names):
        folder = results / name
        folder.mkdir(parents=True)
        figure_cell = nbformat.v4.new_code_cell("display(ctx.save_figure(fig, 'roc'))")
        figure_cell.outputs = [nbformat.v4.new_output(
            "display_data", data={"image/png": base64.b64encode(_png("C0")).decode(),
                                  "text/plain": "saved figures/roc.png"})]
        notebook = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {name} · a paper — its method"),
            figure_cell,
            nbformat.v4.new_markdown_cell("## Claims\n\nEach claim compares two models."),
        ])
        nbformat.write(notebook, folder / f"{name}.ipynb")
        pd.DataFrame({"id": [f"claim-{number}a", f"claim-{number}b"],
                      "statement": ["A beats B", "C < D & E"],
                      "status": ["holds", "not significant"], "effect": [0.02, -0.001],
                      "ci_low": [0.01, -0.01], "ci_high": [0.03, 0.008]}).to_csv(
            folder / "claims.csv", index=False)
        (folder / "run.json").write_text(json.dumps(
            {"status": "ok", "runtime_s": 12.5 + number, "parameters": {"profile": "smoke"}}))
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        save_figure(fig, figures / name / "roc")
        plt.close(fig)
    return results, figures


def test_the_site_links_every_notebook_claim_and_figure(tmp_path):
    results, figures = _reproduction(tmp_path)
    index = build_site(results, figures, tmp_path / "site", profile="smoke")
    site = index.parent
    assert broken_links(site) == []
    page = index.read_text()
    assert page.count('href="notebooks/') == 2 and "holds: 2, not significant: 2" in page
    claims = (site / "claims.html").read_text()
    # one row per claim, each linked to its notebook's Claims section; text is escaped
    assert len(re.findall(r'<a href="notebooks/0\d_\w+\.html#Claims">', claims)) == 4
    assert "C &lt; D &amp; E" in claims
    gallery = (site / "gallery.html").read_text()
    assert gallery.count("<img ") == 2
    assert (site / "figures" / "01_first" / "roc.svg").read_bytes() == \
        (figures / "01_first" / "roc.svg").read_bytes()
    notebook = (site / "notebooks" / "01_first.html").read_text()
    assert 'id="Claims"' in notebook and "data:image/png;base64," in notebook


def test_broken_links_finds_a_missing_image_and_a_missing_anchor(tmp_path):
    results, figures = _reproduction(tmp_path)
    site = build_site(results, figures, tmp_path / "site").parent
    (site / "figures" / "02_second" / "roc.png").unlink()
    gallery = site / "gallery.html"
    gallery.write_text(gallery.read_text().replace("</body>",
                                                   '<a href="claims.html#nowhere">x</a></body>'))
    assert sorted(broken_links(site)) == [
        "gallery.html: claims.html#nowhere (no such anchor)",
        "gallery.html: figures/02_second/roc.png",
        "gallery.html: figures/02_second/roc.png",  # the image and the link around it
    ]


def test_a_site_without_executed_notebooks_says_how_to_make_them(tmp_path, capsys):
    with pytest.raises(MissingDataError, match="run `fkd reproduce` first"):
        build_site(tmp_path / "results", tmp_path / "figures", tmp_path / "site")
    assert main(["site", "--results-dir", str(tmp_path / "results"),
                 "--out", str(tmp_path / "site")]) == 2
    assert "no executed notebook" in capsys.readouterr().err


def test_fkd_site_reads_the_profile_from_the_run_records(tmp_path, capsys):
    results, figures = _reproduction(tmp_path)
    assert main(["site", "--results-dir", str(results), "--figures-dir", str(figures),
                 "--out", str(tmp_path / "site")]) == 0
    assert "site written to" in capsys.readouterr().out
    assert "<code>smoke</code> profile" in (tmp_path / "site" / "index.html").read_text()


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed")
def test_the_index_renders_in_headless_chromium(tmp_path):
    results, figures = _reproduction(tmp_path)
    index = build_site(results, figures, tmp_path / "site")
    shot = screenshot(index, tmp_path / "index.png", size=(800, 600))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (800, 600)
