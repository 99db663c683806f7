"""Sphinx configuration of the facekit book (built by book/build.py into _build/html).

Sphinx + MyST-NB + sphinx-book-theme: the stack Jupyter Book 1 wraps, used directly. Everything
it needs is installed from PyPI (requirements.txt); nothing is downloaded at build time, and
MathJax is served from the book itself (sphinx-mathjax-offline), so the book reads offline.
"""

project = "facekit: FaceNet, step by step"
author = "facekit contributors"
copyright = "facekit contributors"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The notebooks arrive executed (tests or book/build.py): never run them again here.
nb_execution_mode = "off"
nb_output_stderr = "remove"          # TensorFlow's log lines and progress bars are not content
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "html_image"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]

html_theme = "sphinx_book_theme"
html_title = "facekit: FaceNet, step by step"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "home_page_in_toc": True,
}
html_static_path = []
html_last_updated_fmt = None
