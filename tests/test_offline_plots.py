"""`dvc plots show` / `dvc plots diff` pages load no remote script: `.dvc/config` points DVC at
`.dvc/plots/offline.html`, which inlines Vega, Vega-Lite and Vega-Embed (built by
tools/build_offline_html.py) instead of DVC's default CDN script tags."""

import importlib.util
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest
from dvc_repo import Repo, dvc, init, run
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["vega", "vega-lite", "vega-embed"]


def build_script() -> ModuleType:
    path = ROOT / "tools" / "build_offline_html.py"
    spec = importlib.util.spec_from_file_location("build_offline_html", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks the module up
    spec.loader.exec_module(module)
    return module


class Tags(HTMLParser):
    """The attributes of every script, link and img tag (script contents are not parsed)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "link", "img"}:
            self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory) -> Repo:
    """A git + DVC repo with the project's plots config, a top-level CSV plot and a PNG."""
    path = tmp_path_factory.mktemp("offline") / "repo"
    repo = init(path)  # the project's plot templates, offline page and DVC config
    (path / "loss.csv").write_text("step,loss\n0,1.0\n1,0.6\n2,0.4\n")
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path / "cell.png")
    (path / "dvc.yaml").write_text(
        "plots:\n  - loss.csv:\n      x: step\n      y: loss\n      template: linear\n"
        "  - cell.png\n"
    )
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "plots")
    (path / "loss.csv").write_text("step,loss\n0,1.0\n1,0.5\n2,0.3\n")  # for plots diff
    return repo


@pytest.mark.parametrize("command", [["show"], ["diff", "HEAD"]])
def test_plots_page_renders_with_inlined_libraries_only(plots_repo, command):
    out = plots_repo.path.parent / f"out_{command[0]}"
    dvc(plots_repo, "plots", *command, "-o", str(out))
    page = (out / "index.html").read_text(encoding="utf-8")

    assert "vegaEmbed('#loss_csv', spec)" in page
    assert '"loss"' in page
    parser = Tags()
    parser.feed(page)
    images = [attrs.get("src") or "" for tag, attrs in parser.tags if tag == "img"]
    assert images
    assert all(src.startswith("static/") and src.endswith("cell.png") for src in images)

    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert len(scripts) >= 3 + 1  # the three libraries, then one per Vega plot
    assert not [attrs for attrs in scripts if "src" in attrs]
    for tag, attrs in parser.tags:
        if tag in {"script", "link"}:
            for key in ("src", "href"):
                assert not re.match(r"\s*(https?:)?//", attrs.get(key) or ""), (tag, attrs)
    assert "cdn.jsdelivr.net" not in page

    inlined = re.findall(r"<!-- ([\w-]+) (\d+\.\d+\.\d+) \(npm\), BSD-3-Clause, Copyright", page)
    assert [name for name, _ in inlined] == PACKAGES
    for _, version in inlined:
        assert f'"{version}"' in page  # each library's own version string
    assert ".vegaEmbed=" in page  # vega-embed's UMD wrapper defines the global
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
        assert placeholder not in page


@pytest.mark.parametrize("bad", ["</script>", "</SCRIPT >", "{plot_divs}", "{scripts}"])
def test_build_script_refuses_a_library_that_would_break_the_page(bad):
    build = build_script()
    library = build.Library("vega", "0.0.0", f"var s = '{bad}';")
    with pytest.raises(build.UnsafeLibraryError, match="cannot be inlined"):
        build.render_page([library])


def test_build_script_inlines_libraries_in_order_with_their_licence():
    build = build_script()
    libraries = [
        build.Library(name, "1.2.3", f"var {name.replace('-', '_')};") for name in PACKAGES
    ]
    page = build.render_page(libraries)
    assert "{scripts}" not in page
    assert page.count("{plot_divs}") == page.count("{refresh_tag}") == 1
    positions = [
        page.index(f"<!-- {name} 1.2.3 (npm), BSD-3-Clause, Copyright (c) 2015, University")
        for name in PACKAGES
    ]
    assert positions == sorted(positions)


def _declared_templates() -> dict[str, str]:
    """Every plot's template in dvc.yaml and cv/dvc.yaml, by plot file."""
    import yaml

    found = {}
    for pipeline in (ROOT / "dvc.yaml", ROOT / "cv" / "dvc.yaml"):
        for stage in yaml.safe_load(pipeline.read_text())["stages"].values():
            for entry in stage.get("plots", []):
                for path, props in entry.items() if isinstance(entry, dict) else []:
                    if props and "template" in props:
                        found[path] = props["template"]
    return found


def _colours(spec: dict) -> list[dict]:
    """The color encodings of a Vega-Lite spec, its layers and its faceted spec."""
    own = [spec["encoding"]["color"]] if "color" in spec.get("encoding", {}) else []
    inner = [*spec.get("layer", []), *([spec["spec"]] if "spec" in spec else [])]
    return own + [c for part in inner for c in _colours(part)]


def test_every_plot_tells_revisions_apart_in_a_diff():
    import json

    from dvc_render.vega_templates import TEMPLATES

    builtin = {t.DEFAULT_NAME: json.dumps(t.DEFAULT_CONTENT) for t in TEMPLATES}
    templates = _declared_templates()
    assert len(templates) >= 7
    for path, name in templates.items():
        custom = ROOT / ".dvc" / "plots" / f"{name}.json"
        if not custom.exists():  # DVC's own: it colours (or, for confusion, facets) by revision
            assert "<DVC_METRIC_COLOR>" in builtin[name] or '"rev"' in builtin[name], path
            continue
        spec = json.loads(custom.read_text())
        computed = {t["as"]: t["calculate"] for t in spec.get("transform", []) if "calculate" in t}
        colours = _colours(spec)
        assert colours, (path, name)
        for colour in colours:
            field = colour["field"]
            assert field == "rev" or "datum.rev" in computed.get(field, ""), (path, name, colour)
