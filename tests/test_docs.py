"""The documentation site (docs/, Sphinx + MyST): it builds with warnings as errors, its generated
references cover the code (every CLI subcommand, dfptmag.load, every workflow key), and a real
headless browser (Debian's chromium) shows it as meant: MathJax renders the equations, every image
loads, every internal link resolves. Also: no link in README.md or docs/ points outside the
repository, and LICENSE / CITATION.cff agree with pyproject.toml. No QE."""
from __future__ import annotations

import argparse
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAPER_DOI = "10.1038/s42005-020-0289-3"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# ------------------------------------------------------------------ the build
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """docs/ built once with ``python3 -m sphinx -W --keep-going -b html`` (what CI runs)."""
    for mod in ("sphinx", "myst_parser", "furo"):
        pytest.importorskip(mod, reason='the docs extra is not installed (pip install -e ".[docs]")')
    out = tmp_path_factory.mktemp("docs") / "html"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(DOCS), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"sphinx -W failed:\n{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}"
    return out


def test_docs_build_with_warnings_as_errors(built):
    for page in ("index", "installation", "quickstart", "cli", "api", "theory", "validation",
                 "changelog", "citing"):
        assert (built / f"{page}.html").is_file(), page


def _subcommands(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommands(sub, prefix + (name,))


def test_cli_reference_names_every_subcommand(built):
    from dfptmag.cli import build_parser
    page = (built / "cli.html").read_text()
    words = list(_subcommands(build_parser()))
    assert len(words) >= 11
    missing = [" ".join(w) for w in words if f"dfptmag {' '.join(w)}" not in page]
    assert not missing, f"CLI reference lacks {missing}"
    # the page holds the parser's own help, option by option
    for opt in ("--interpolate", "--engine", "--allow-charge-mismatch", "--movie"):
        assert opt in page, opt


def test_api_reference_from_docstrings(built):
    page = (built / "api.html").read_text()
    assert "dfptmag.load" in page
    for name in ("Result", "QPoint", "Modes", "Bands", "to_pymatgen"):
        assert name in page, name
    # autodoc really ran: a docstring sentence of dfptmag.api appears on the page
    assert "returns objects, not dicts" in page


def test_workflow_reference_lists_every_key():
    from dfptmag.workflow.config import KNOWN_KEYS
    text = (DOCS / "workflow.md").read_text()
    missing = [f"[{sec}]" for sec in KNOWN_KEYS if f"`[{sec}]`" not in text]
    missing += [f"[{sec}] {key}" for sec, keys in KNOWN_KEYS.items() for key in (keys or ())
                if f"`{key}`" not in text]
    assert not missing, f"docs/workflow.md lacks {missing}"


def test_every_python_example_in_the_docs_is_run():
    """The ```python blocks of the docs are executed by test_api.test_docs_python_examples_run;
    a page with one that it does not run must be added there (or the block marked ```py)."""
    from test_api import DOC_PYTHON_PAGES
    with_python = {str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md")
                   if "_build" not in p.parts and re.search(r"^```python\n", p.read_text(), flags=re.M)}
    assert with_python == set(DOC_PYTHON_PAGES)
    assert not re.search(r"^```python\n", (ROOT / "README.md").read_text(), flags=re.M)


def _hdf5_sections() -> tuple[str, str]:
    text = (DOCS / "hdf5.md").read_text().replace("\\_", "_")
    q, bands = text.split("## `bands.h5`")
    return q, bands


def _named(dataset: str, text: str) -> bool:
    """'modes/rms' is named as `modes/rms` or inside a `group/{a, b}` list."""
    group, _, leaf = dataset.rpartition("/")
    if re.search(rf"`{re.escape(dataset)}`", text):
        return True
    return any(re.search(rf"\b{re.escape(leaf)}\b", m) for m in re.findall(rf"`{re.escape(group)}/\{{([^}}]*)\}}`", text))


def test_hdf5_reference_names_every_dataset():
    """Every dataset the writers create (dfptmag.results.qfile's calls, bandsfile.UNITS) is named on
    the HDF5 page, under its file."""
    from dfptmag.results import bandsfile
    q_text, bands_text = _hdf5_sections()
    src = (ROOT / "dfptmag" / "results" / "qfile.py").read_text()
    groups = {"g": "", "p": "patterns", "c": "checks", "m": "modes", "t": "time_odd"}
    q_sets = {f"{groups[v]}/{n}".lstrip("/") for v, n in re.findall(r'_ds\((\w), "(\w+)"', src)}
    q_sets |= {"patterns/field"} | {f"structure/{n}" for n in ("lattice_angstrom", "scaled_positions",
                                                                "symbols", "masses_amu", "cell_bohr",
                                                                "positions_bohr")}
    assert len(q_sets) > 20
    missing = [d for d in sorted(q_sets) if not _named(d, q_text)]
    missing += [f"bands.h5 {d}" for d in sorted(bandsfile.UNITS) if not _named(d, bands_text)]
    from dfptmag.results import contracted
    c_text = bands_text.split("## `contracted/irr<p>.h5`")[1].split("\n## ")[0]
    missing += [f"contracted {d}" for d in contracted.ARRAYS if not _named(d, c_text)]
    assert not missing, f"docs/hdf5.md lacks {missing}"


# ------------------------------------------------------------------ the built html, in a browser
class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text())
    return p


def test_built_pages_images_and_links_resolve(built):
    pages = sorted(built.rglob("*.html"))
    parsed = {p: _parse(p) for p in pages}
    bad, n_img, n_link = [], 0, 0
    for page, refs in parsed.items():
        for src in refs.imgs:
            u = urlsplit(src)
            if u.scheme or src.startswith("data:"):
                bad.append(f"{page.name}: external image {src}")
                continue
            n_img += 1
            if not (page.parent / unquote(u.path)).is_file():
                bad.append(f"{page.name}: image {src} missing")
        for href in refs.links:
            u = urlsplit(href)
            if u.scheme in ("http", "https", "mailto"):
                continue
            n_link += 1
            target = (page.parent / unquote(u.path)).resolve() if u.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                bad.append(f"{page.name}: link {href} → missing {target}")
            elif u.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if u.fragment not in ids:
                    bad.append(f"{page.name}: link {href}: no id {u.fragment!r} in {target.name}")
    assert not bad, "\n".join(bad[:40])
    assert n_img >= 5 and n_link >= 100          # figures on the pages, the navigation on every page
    # every page of the site is reachable from the front page's navigation
    nav = {urlsplit(h).path for h in parsed[built / "index.html"].links if not urlsplit(h).scheme}
    for page in ("installation", "quickstart", "tutorial-bands", "howto-slurm", "cli", "api",
                 "workflow", "hdf5", "units", "theory", "validation", "performance", "changelog", "citing"):
        assert f"{page}.html" in nav, page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _browser(*args, timeout=60) -> subprocess.CompletedProcess:
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (./install.sh --test installs Debian's chromium)")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_browser_renders_math(built):
    """MathJax (served from _static, no network) turns the theory page's equations into
    mjx-container elements in the browser's DOM; the raw TeX is gone from the rendered text."""
    proc = _browser("--dump-dom", (built / "theory.html").as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "mathjax" in (built / "theory.html").read_text()
    n = dom.count("<mjx-container")
    assert n >= 10, f"MathJax rendered {n} formulas on the theory page"
    assert 'display="true"' in dom                   # the display equations too


def test_browser_front_page_screenshot(built):
    """A screenshot of the front page at 1280×2000: a real picture (text, the figure, the side
    navigation), kept in the build directory (docs/figures/docs_screenshot.png is one)."""
    from PIL import Image
    shot = built / "docs_screenshot.png"
    proc = _browser(f"--screenshot={shot}", "--window-size=1280,2000", (built / "index.html").as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    im = Image.open(shot).convert("RGB")
    assert im.size == (1280, 2000)
    small = im.resize((128, 200))
    colours = len(small.getcolors(maxcolors=1 << 16) or ())
    assert colours > 50, f"screenshot looks blank ({colours} colours)"
    # the figure's pixels are there: the page's image element was decoded by the browser
    dom = _browser("--dump-dom", (built / "index.html").as_uri()).stdout
    assert "figures/interpolated_bands_3x3.png" in dom or "_images/interpolated_bands_3x3.png" in dom


# ------------------------------------------------------------------ links, licence, citation
_LINK = re.compile(r"!?(?<!\\)\[[^\]]*(?<!\\)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|(?:src|href)=\"([^\"]+)\"")


def _markdown_files():
    return [ROOT / "README.md"] + sorted(DOCS.rglob("*.md"))


def test_no_link_points_outside_the_repository():
    """Every relative link and image of README.md and docs/**/*.md resolves, from the file's
    folder, to a file inside the repository; nothing names the papers' copies beside it."""
    bad = []
    for md in _markdown_files():
        if "_build" in md.parts:
            continue
        text = re.sub(r"^```.*?^```", "", md.read_text(), flags=re.S | re.M)   # not code blocks
        text = re.sub(r"`[^`\n]*`", "", text)
        for m in _LINK.finditer(text):
            target = m.group(1) or m.group(2)
            u = urlsplit(target)
            if u.scheme or target.startswith("#"):
                continue
            path = (md.parent / unquote(u.path)).resolve()
            rel = md.relative_to(ROOT)
            if "../shared" in target or not path.is_relative_to(ROOT):
                bad.append(f"{rel}: {target} leaves the repository")
            elif not path.exists():
                bad.append(f"{rel}: {target} does not exist")
        if "shared/seeds" in md.read_text():
            bad.append(f"{md.relative_to(ROOT)}: names shared/seeds (cite the paper instead)")
    assert not bad, "\n".join(bad)


def test_license_matches_pyproject():
    lic = _pyproject()["project"]["license"]["text"]
    assert lic == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the dfptmag developers" in text
    assert "Permission is hereby granted, free of charge" in text


def test_citation_cff_matches_pyproject():
    import yaml
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = _pyproject()["project"]
    assert cff["cff-version"] == "1.2.0"
    assert cff["title"] == project["name"] == "dfptmag"
    assert str(cff["version"]) == project["version"]
    assert cff["license"] == project["license"]["text"]
    assert cff["authors"] and all("name" in a or "family-names" in a for a in cff["authors"])
    paper = cff["preferred-citation"]
    assert paper["type"] == "article" and paper["doi"] == PAPER_DOI
    assert paper["journal"] == "Communications Physics"
    assert (str(paper["volume"]), str(paper["start"]), int(paper["year"])) == ("3", "22", 2020)
    assert [a["family-names"] for a in paper["authors"]] == ["Iturbe-Beristain", "Eiguren", "Gurtubay"]
    assert paper["title"] == "Magnetic oscillations induced by phonons in non-magnetic materials"
    # the same paper, the same doi, on the docs' citing page
    assert PAPER_DOI in (DOCS / "citing.md").read_text()
