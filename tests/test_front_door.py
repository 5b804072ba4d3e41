"""The README's quick start is what CI runs: install command and test command stay in step with .ci/run."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_quick_start_is_install_quickstart_test():
    install, quickstart, tests = quick_start_commands()
    assert install == 'pip install -e ".[dev]"'
    assert quickstart == "python -m ganaug.tune search_spaces/quickstart.yaml"
    assert tests.startswith("python -m pytest")
    assert (ROOT / "search_spaces" / "quickstart.yaml").is_file()


def test_ci_runs_the_readme_install_and_test_commands():
    install, _, tests = quick_start_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert any(line.endswith(install.replace("pip install", "pip install -q")) or line.endswith(install)
               for line in ci_lines), "CI must install the way the README says"
    assert tests in ci_lines, "CI must run the README's test command"


def test_dependencies_cover_the_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"]}
    for needed in ("ray", "torch", "torchvision", "optuna", "numpy", "pandas", "tensorboard", "pyyaml",
                   "pydantic", "scikit-learn", "matplotlib"):
        assert needed in names
    assert {"pytest", "nbclient", "ipykernel", "ruff"} <= {re.split(r"[<>=\[ ]", d)[0]
                                                          for d in project["optional-dependencies"]["dev"]}
    assert project["requires-python"] == ">=3.10"


# ----------------------------------------------------------------------------------------------
# The front door and the docs behind it.

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)")
# Each section of the README before the docs site, and the page (and heading) it moved to.
MOVED = {
    "Quick start": ("getting-started.md", "Quick start"),
    "What a search writes": ("outputs.md", "What a search writes"),
    "Is the generator any good? The quality metrics": ("outputs.md", "Quality metrics: is the generator any good?"),
    "The command": ("getting-started.md", "The command"),
    "The search-space format": ("search-space.md", "The search-space format"),
    "Policy keys (`fixed:` and `search:`)": ("search-space.md", "Policy keys (`fixed:` and `search:`)"),
    "Datasets (`data:`)": ("search-space.md", "Datasets (`data:`)"),
    "Why every search tunes the baselines too": ("search-space.md", "Why every search tunes the baselines too"),
    "The searcher: honest TPE, and ASHA that waits for slow starters": ("searcher.md", "The searcher and ASHA"),
    "How a trial works": ("trial.md", "How a trial works"),
    "More generator families: ALI, translation, continuous conditions": ("generators.md",
                                                                         "ALI, translation, continuous conditions"),
    "Bring your own classifier": ("classifier.md", "Bring your own classifier"),
    "Worked example: torchvision's ResNet-18 on the CIFAR-10 subset": (
        "classifier.md", "Worked example: torchvision's ResNet-18 on the CIFAR-10 subset"),
    "Your own model in ten lines": ("classifier.md", "Your own model in ten lines"),
    "What the factory must accept and return": ("classifier.md", "What the factory must accept and return"),
    "Checked before Ray starts": ("classifier.md", "Checked before Ray starts"),
    "After the search: is the best policy really better?": ("evaluation.md",
                                                            "After the search: is the best policy really better?"),
    "Export synthetic images": ("generate.md", "Export synthetic images"),
    "Notebooks": ("notebooks.md", "Notebooks"),
    "Worked example: CIFAR-10, 500 images per class, on a CPU": (
        "worked-example.md", "Worked example: CIFAR-10, 500 images per class, on a CPU"),
    "Running on a cluster": ("cluster.md", "Running on a cluster"),
    "Once: AWS setup": ("cluster.md", "Once: AWS setup"),
    "Results on S3": ("cluster.md", "Results on S3"),
    "The workflow": ("cluster.md", "The workflow"),
    "How many trials at once": ("cluster.md", "How many trials at once"),
    "What the search-space resource settings do": ("cluster.md", "What the search-space resource settings do"),
    "On your own machines": ("cluster.md", "On your own machines"),
    "Benchmarks": ("benchmarks.md", "Benchmarks"),
    "Development": ("layout.md", "Development"),
    "How the code is organised": ("layout.md", "How the code is organised"),
}


def headings(path: Path) -> list[str]:
    """The Markdown headings of a file, outside code blocks, without their #s."""
    text = FENCE.sub("", path.read_text())
    return [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#{1,6} ", line)]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in headings(path):
        anchor = github_anchor(heading)
        found.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
        seen[anchor] = seen.get(anchor, 0) + 1
    return found


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", path.read_text()))  # code shows links, it does not make them
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{path.name}" for path in sorted(DOCS.glob("*.md")))])
def test_every_relative_link_resolves_to_a_file_and_heading(page):
    """As GitHub renders them (README.md is the front door; the site's own build checks its links too)."""
    source = ROOT / page
    broken = []
    for target in relative_links(source):
        file, _, anchor = target.partition("#")
        resolved = (source.parent / file).resolve() if file else source
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page}: " + "; ".join(broken)


def test_readme_is_a_front_door_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    linked = {Path(target.partition("#")[0]).name for target in relative_links(ROOT / "README.md")
              if target.startswith("docs/") and target.partition("#")[0].endswith(".md")}
    assert linked == {path.name for path in DOCS.glob("*.md")}, "README links every docs page"
    assert "ray up cluster.yaml" in readme and "docs/quickstart_samples.png" in readme


def test_every_section_of_the_old_readme_landed_on_a_docs_page():
    for old, (page, heading) in MOVED.items():
        assert heading in headings(DOCS / page), f"README's old {old!r} section: {page} has no heading {heading!r}"


def test_the_site_lists_every_page_and_ci_builds_it_strictly():
    config = (ROOT / "mkdocs.yml").read_text()
    nav = re.findall(r"^  - [^:]+: (\S+\.md)$", config, re.M)
    assert sorted(nav) == sorted(path.name for path in DOCS.glob("*.md"))
    assert "hooks:\n  - docs/include_hook.py" in config
    ci = (ROOT / ".ci" / "run").read_text()
    assert "mkdocs build --strict" in ci
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"docs", "mlflow", "wandb"} <= set(extras)
    assert all(re.fullmatch(r"[\w-]+==[\w.]+", pin) for pin in extras["docs"]), "the docs tools are pinned"
