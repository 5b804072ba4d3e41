"""MkDocs hook (mkdocs.yml `hooks:`): pages include text that lives in one file outside docs/, so that it is never
copied by hand. On GitHub a page shows the fallback between the two comments (a link to the file); on the site,
the file's text replaces it:

    <!-- include: benchmarks/README.md -->                 (a path from the repository root)
    The figures are in [benchmarks/README.md](../benchmarks/README.md).
    <!-- end include -->

`<!-- include: README.md search-space-example -->` takes only the part of the file between
`<!-- begin search-space-example -->` and `<!-- end search-space-example -->`. Relative links and images of the
included text are rewritten to point from the page to the same files; a missing file or section fails the build.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"<!-- include: (?P<path>\S+)(?: (?P<section>[\w-]+))? -->\n.*?<!-- end include -->", re.S)
LINK = re.compile(r"(?P<head>!?\[[^\]]*\]\()(?P<target>[^)\s]+)\)")


def on_page_markdown(markdown: str, page, config, files) -> str:
    page_dir = (Path(config["docs_dir"]) / page.file.src_path).parent
    return DIRECTIVE.sub(lambda match: included(match["path"], match["section"], page_dir), markdown)


def included(path: str, section: str | None, page_dir: Path) -> str:
    source = ROOT / path
    if not source.is_file():
        raise FileNotFoundError(f"include: {path} does not exist under {ROOT}")
    text = source.read_text()
    if section:
        begin, end = f"<!-- begin {section} -->\n", f"<!-- end {section} -->"
        if begin not in text or end not in text:
            raise ValueError(f"include: {path} has no section {section!r} ({begin.strip()} ... {end})")
        text = text.split(begin, 1)[1].split(end, 1)[0]
    return LINK.sub(lambda match: match["head"] + moved(match["target"], source.parent, page_dir) + ")", text)


def moved(target: str, source_dir: Path, page_dir: Path) -> str:
    """A link target of the included file, relative to the page instead (URLs and anchors unchanged)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
        return target
    path, _, anchor = target.partition("#")
    relative = os.path.relpath(source_dir / path, page_dir).replace(os.sep, "/")
    return relative + (f"#{anchor}" if anchor else "")
