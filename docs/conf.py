"""Sphinx configuration of the skflow documentation.

Build (warnings are errors)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery runs every ``examples/plot_*.py`` and prints each one's wall and
CPU time (``sphinxext/gallery_clock.py``); the API pages list every public
name of ``skflow.__all__`` and ``skflow.engine.__all__`` (written to
``docs/_api_*.rst`` at configuration time, so a new estimator shows up
without editing the docs).  The built site works offline: it loads no script
or style sheet from another host (``bash scripts/docs_screenshots.sh``
checks, and takes screenshots).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "sphinxext"))

import skflow  # noqa: E402
import skflow.engine  # noqa: E402
from gallery_clock import CLOCK  # noqa: E402

project = "skflow"
author = "skflow developers"
copyright = "skflow developers, BSD-3-Clause"
release = skflow.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # Ships MathJax into _static/mathjax: the site renders maths offline.
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build", "_api_*.rst", "benchmark_results.rst", "anomaly_results.rst", "ferumal_results.rst", "quality_results.rst",
    "transformer_results.rst", "speed_results.rst",
    "scripts", "sphinxext", "Thumbs.db", ".DS_Store",
]
root_doc = "index"
default_role = "literal"

# --------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = f"skflow {release}"
html_theme_options = {
    "navigation_with_keys": False,
    # Every top-level page in the header (the default hides some under
    # "More"); a search icon instead of a search field leaves them room.
    "header_links_before_dropdown": 8,
    "navbar_persistent": ["search-button"],
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
html_css_files = ["skflow.css"]
# The built site loads nothing from the network: MathJax comes from the
# sphinx-mathjax-offline package (_offline_mathjax), and the gallery's timing
# pages lose their CDN-hosted table widgets (_strip_cdn_html).


def _offline_mathjax(app, config):
    """Use the SVG output of the MathJax that sphinx-mathjax-offline copies into ``_static``.

    That extension sets ``mathjax_path`` in its own ``setup``, after this file
    is read, hence an event.  SVG output needs no web fonts, which browsers
    may refuse to load from ``file://`` pages.
    """
    config.mathjax_path = "mathjax/tex-svg.js"


def _drop_empty_section_nav(app, pagename, templatename, context, doctree):
    """No primary sidebar on top-level pages without sub-pages.

    pydata-sphinx-theme shows a "Section Navigation" sidebar on every page
    that has a toctree ancestor, even when the section is the page alone.
    """
    includes = app.env.toctree_includes
    if pagename in includes.get(app.config.root_doc, ()) and not includes.get(pagename):
        context["sidebars"] = []

# ------------------------------------------------------- autodoc / numpydoc
autosummary_generate = ["api", "_api_public", "_api_engine"]
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
autoclass_content = "class"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document only what skflow defines: not torch.nn.Module's or BaseEstimator's methods.

    Their docstrings are written for their own documentation (references to
    its labels), and users read them there.
    """
    if what != "class" or skip:
        return None
    target = getattr(obj, "fget", obj)
    target = getattr(target, "__func__", target)
    module = getattr(target, "__module__", None)
    if module is None and not callable(target):
        return None
    if module is None or not module.startswith("skflow"):
        return True
    return None


_LITERAL = re.compile(r"``[^`]*``")


def _protect_ellipsis_in_literals(app, what, name, obj, options, lines):
    """Write ``...`` inside inline literals as an ellipsis character.

    autosummary ends a summary at the first period followed by a space, even
    inside a literal: ``f_k o ... o f_1`` would be cut into an unterminated
    literal (a docutils warning, hence a failed ``-W`` build).
    """
    for i, line in enumerate(lines):
        if "..." in line and "``" in line:
            lines[i] = _LITERAL.sub(lambda m: m.group(0).replace("...", "\u2026"), line)


# ----------------------------------------------------------- sphinx-gallery
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    # Only plot_*.py are gallery examples (examples/demo.py is a script).
    "ignore_pattern": r"(^|/)(?!plot_)[^/]*\.py$",
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("skflow",),
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    # Times each example (see docs/sphinxext/gallery_clock.py).
    "reset_modules": ("matplotlib", "gallery_clock.CLOCK"),
    "reset_modules_order": "both",
}
# The examples end with plt.show(), which warns under the Agg backend; keep
# their output readable.
warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")

_CDN_HTML = re.compile(r"^  \.\. raw:: html\n\n(?:    .*\n|\n)*?(?=  \.\. list-table::)", re.MULTILINE)
# The memory column's header and cells (times always contain a colon).
_MEMORY_COLUMN = re.compile(r"^     - (?:Mem \(MB\)|\d+\.\d+|N/A)\n(?=   \* - |\Z|\n)", re.MULTILINE)


def _strip_cdn_html(app, docname, source):
    """Drop the raw HTML that sphinx-gallery puts on its timing pages.

    It loads jQuery, Bootstrap and DataTables from three CDNs to make the
    table sortable; without it the page is a plain table (slowest first),
    and the site loads nothing from the network.  The memory column goes
    too: it reads 0.0 when memory is not measured (``show_memory=False``).
    """
    if docname.endswith("sg_execution_times"):
        source[0] = _CDN_HTML.sub("", source[0])
        if not sphinx_gallery_conf["show_memory"]:
            source[0] = _MEMORY_COLUMN.sub("", source[0])


# ------------------------------------------------------ generated API lists
def _section(title, names, module, template):
    lines = [title, "-" * len(title), "", f".. currentmodule:: {module}", "", ".. autosummary::",
             "   :toctree: generated/", f"   :template: {template}", "", *[f"   {n}" for n in names], ""]
    return lines


def _kind(obj):
    return "class.rst" if inspect.isclass(obj) else "function.rst"


def write_api_lists():
    """Write ``_api_public.rst`` and ``_api_engine.rst`` from the packages' ``__all__``."""
    public = [n for n in skflow.__all__ if not n.startswith("_")]
    groups = {
        "Density estimators": [n for n in public if n.endswith("Density") and n != "BaseFlowDensity"],
        "Outlier detection": [n for n in public if "Outlier" in n],
    }
    grouped = {n for names in groups.values() for n in names}
    groups["Base class"] = [n for n in public if n == "BaseFlowDensity"]
    groups["Other"] = [n for n in public if n not in grouped and n != "BaseFlowDensity"]
    lines = [".. Generated by docs/conf.py from skflow.__all__; do not edit.", ""]
    for title, names in groups.items():
        classes = [n for n in names if inspect.isclass(getattr(skflow, n))]
        functions = [n for n in names if n not in classes]
        for kind, subset in (("class.rst", classes), ("function.rst", functions)):
            if subset:
                lines += _section(title, subset, "skflow", kind)
    _write_if_changed(DOCS / "_api_public.rst", lines)

    engine = list(skflow.engine.__all__)
    classes = [n for n in engine if inspect.isclass(getattr(skflow.engine, n))]
    functions = [n for n in engine if n not in classes]
    lines = [".. Generated by docs/conf.py from skflow.engine.__all__; do not edit.", ""]
    lines += _section("Bijections and flows", classes, "skflow.engine", "class.rst")
    if functions:
        lines += _section("Functions", functions, "skflow.engine", "function.rst")
    _write_if_changed(DOCS / "_api_engine.rst", lines)


def _write_if_changed(path, lines):
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


write_api_lists()
os.environ.setdefault("MPLBACKEND", "Agg")


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-docstring", _protect_ellipsis_in_literals)
    app.connect("source-read", _strip_cdn_html)
    app.connect("config-inited", _offline_mathjax)
    app.connect("html-page-context", _drop_empty_section_nav)
    app.connect("build-finished", CLOCK.summary)
