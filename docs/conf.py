"""Sphinx configuration of the sklearn_distill documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-D plot_gallery=0`` skips running the gallery examples.
"""

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the source tree next to this file, whether or not the package is installed.
sys.path.insert(0, str(ROOT))

import sklearn_distill  # noqa: E402

# -- project -------------------------------------------------------------------------------------

project = "sklearn_distill"
author = "The sklearn_distill developers"
copyright = "The sklearn_distill developers"
release = sklearn_distill.__version__
version = ".".join(release.split(".")[:2])

# -- extensions ----------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "Thumbs.db", ".DS_Store"]

# Pages that may not be complete yet: each is built only once its own file and every file it
# includes or shows exist; otherwise it is left out of the build and out of the toctrees, and a
# line says why. ``benchmarks_comparison`` shows benchmarks/results/comparison.md,
# transfer_cifar10_ipc10.md and comparison_time.png; ``scale_out`` is its own page.
RESULTS = ROOT / "benchmarks" / "results"
OPTIONAL_PAGES = ("benchmarks_comparison", "scale_out")

_REFERENCE = re.compile(r"^```\{(?:include|image|figure|literalinclude)\}\s+(\S+)\s*$"
                        r"|!\[[^\]]*\]\(([^)\s]+)\)", re.M)


def _missing_files(page):
    """The files that ``page`` (a document name) needs and that do not exist."""
    path = DOCS / f"{page}.md"
    if not path.exists():
        return [path]
    missing = []
    for match in _REFERENCE.finditer(path.read_text(encoding="utf-8")):
        target = match.group(1) or match.group(2)
        if "://" in target:
            continue
        if not (path.parent / target).exists():
            missing.append((path.parent / target).resolve())
    return missing


optional_pages = {}
for page in OPTIONAL_PAGES:
    missing = _missing_files(page)
    optional_pages[page] = not missing
    if missing:
        exclude_patterns.append(f"{page}.md")
        print(f"[conf.py] {page}.md left out of this build; missing: "
              + ", ".join(os.path.relpath(m, ROOT) for m in missing))

# -- MyST (the Markdown pages) -------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# -- autodoc, autosummary, numpydoc --------------------------------------------------------------

autosummary_generate = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"
autodoc_member_order = "groupwise"
add_module_names = False

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
# numpydoc's own docstring checks stay off (``numpydoc_validation_checks``): the reference is
# checked by the Sphinx build itself, where any parsing problem is a warning, hence an error.


def _defining_module(obj):
    obj = getattr(obj, "fget", obj)  # properties
    obj = getattr(obj, "__func__", obj)  # class and static methods
    return getattr(obj, "__module__", None) or ""


def _skip_member(app, what, name, obj, skip, options):
    """Document the members this package defines, inherited from its own classes included.

    Members inherited from scikit-learn (``get_params``, metadata routing), Flax (``Module.apply``
    and friends) or ``tuple`` are documented by those projects. The fields of NamedTuple results
    are listed in their ``Attributes`` sections; autodoc would document them a second time as
    "Alias for field number N".
    """
    if what != "class" or skip:
        return skip
    doc = getattr(obj, "__doc__", None) or ""
    if type(obj).__name__ == "_tuplegetter" or doc.startswith("Alias for field number"):
        return True
    if callable(obj) or isinstance(obj, property):
        return not _defining_module(obj).startswith("sklearn_distill")
    return skip


# -- sphinx-gallery ------------------------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("sklearn_distill",),
    "backreferences_dir": str(DOCS / "generated" / "backreferences"),
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "plot_gallery": "True",
    "abort_on_example_error": True,
    "default_thumb_file": None,
}

# -- HTML ----------------------------------------------------------------------------------------

try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_toc_level": 2,
        "header_links_before_dropdown": 8,
        "secondary_sidebar_items": ["page-toc", "sourcelink"],
    }
    # Pages without sub-pages: no empty "Section Navigation" column.
    html_sidebars = {page: [] for page in ("index", "getting_started", "user_guide", "evaluation",
                                           "scale_out")}
except ImportError:  # the docs extra not installed: Sphinx's own theme
    html_theme = "alabaster"
html_title = f"sklearn_distill {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = True
html_last_updated_fmt = None


def heading_offset(name, level):
    """The ``:heading-offset:`` that makes the top heading of a results file ``level`` deep.

    The benchmark scripts write their markdown with or without a ``#`` title; including it with
    this offset keeps the page's heading levels consecutive whatever the file starts with.
    """
    path = RESULTS / name
    levels = []
    if path.exists():
        in_code = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                in_code = not in_code
            elif not in_code and line.startswith("#"):
                hashes = len(line) - len(line.lstrip("#"))
                if line[hashes:hashes + 1] == " ":
                    levels.append(hashes)
    return max(0, level - min(levels)) if levels else 0


# Pages whose source is rendered with Jinja before MyST reads it.
JINJA_PAGES = {"index", "benchmarks", "benchmarks_comparison"}


def _render_jinja(app, docname, source):
    """Render the Jinja in ``index.md`` and the benchmark pages.

    The toctrees there say ``{% if optional_pages.scale_out %}scale_out{% endif %}``, so a page
    that is not built is not listed either (a toctree entry for an excluded page is a warning),
    and the results files are included with ``:heading-offset: {{ heading_offset(...) }}``.
    """
    if docname not in JINJA_PAGES:
        return
    from jinja2 import Template

    source[0] = Template(source[0]).render(optional_pages=optional_pages,
                                           heading_offset=heading_offset)


def _check_api_reference(app):
    """Warn (an error under ``-W``) when a public name is missing from ``api.rst``."""
    from sphinx.util import logging

    listed = set(re.findall(r"^   (\w+)$", (DOCS / "api.rst").read_text(encoding="utf-8"), re.M))
    missing = sorted(set(sklearn_distill.__all__) - listed - {"__version__"})
    if missing:
        logging.getLogger(__name__).warning(
            "api.rst does not list these names of sklearn_distill.__all__: %s", ", ".join(missing))


def setup(app):
    app.connect("builder-inited", _check_api_reference)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("source-read", _render_jinja)
