"""Sphinx configuration of the dfptmag documentation (Markdown pages through MyST-Parser).

Build:  python3 -m sphinx -W --keep-going -b html docs docs/_build/html
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))        # dfptmag_cli: the CLI reference from build_parser()
sys.path.insert(0, str(HERE.parent))          # dfptmag itself, for autodoc and the CLI parser

import dfptmag  # noqa: E402

project = "dfptmag"
author = "the dfptmag developers"
copyright = "2026, the dfptmag developers"
release = version = dfptmag.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",   # MathJax 3 served from _static: the pages render math offline
    "dfptmag_cli",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "figures/*.py"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
# type names in the annotations that autodoc cannot resolve are not documentation errors
nitpicky = False
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = f"dfptmag {release}"
html_static_path = []
