"""Build ``.dvc/plots/offline.html``, a DVC plots page that renders without network.

DVC's default page (``dvc_render.html.PAGE_HTML``) loads Vega, Vega-Lite and
Vega-Embed from a CDN through its ``{scripts}`` placeholder, so on an offline
machine ``dvc plots show`` / ``dvc plots diff`` produce a page with no charts.
This script writes the same page structure with the three libraries inlined in
``<script>`` tags and without ``{scripts}``, so DVC injects no CDN tags.
``.dvc/config`` points DVC at it (``[plots] html_template = plots/offline.html``,
relative to the ``.dvc`` directory).

Only ``{refresh_tag}`` and ``{plot_divs}`` remain; DVC fills them with
``str.replace``, so a library that contains a placeholder (or ``</script``,
which would end its ``<script>`` element early) is refused.

Regenerate (for example to update a version) with the npm registry::

    mkdir -p /tmp/vega && cd /tmp/vega
    npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
    for t in *.tgz; do mkdir -p "x/${t%.tgz}" && tar -xzf "$t" -C "x/${t%.tgz}"; done
    cd -  # back to the repository root
    python tools/build_offline_html.py \\
        --vega /tmp/vega/x/vega-5.33.1/package/build/vega.min.js \\
        --vega-lite /tmp/vega/x/vega-lite-5.23.0/package/build/vega-lite.min.js \\
        --vega-embed /tmp/vega/x/vega-embed-6.29.0/package/build/vega-embed.min.js

The version in each comment is read from the ``package.json`` that ``npm pack``
puts next to ``build/``; all three packages are BSD-3-Clause.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"
LICENSE = "BSD-3-Clause"
COPYRIGHT = "Copyright (c) 2015, University of Washington Interactive Data Lab"
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")
# Order matters: vega-lite needs vega, vega-embed needs both.
PACKAGES = ("vega", "vega-lite", "vega-embed")

# dvc_render's PAGE_HTML without {scripts}; a charset is added because the
# libraries contain non-ASCII characters and a file:// page has no HTTP header.
PAGE_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC Plot</title>
{libraries}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


class UnsafeLibraryError(ValueError):
    """A library cannot be inlined into the DVC HTML template as it is."""


@dataclass(frozen=True)
class Library:
    name: str
    version: str
    code: str


def load_library(path: Path, expected_name: str) -> Library:
    """Read a ``.min.js`` from an unpacked npm package (``package/build/<name>.min.js``)."""
    manifest_path = path.parent.parent / "package.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnsafeLibraryError(
            f"{path}: no {manifest_path} (use the files unpacked from `npm pack`)"
        ) from None
    name, licence = manifest.get("name"), manifest.get("license")
    if name != expected_name:
        raise UnsafeLibraryError(f"{path}: package is {name!r}, not {expected_name!r}")
    if licence != LICENSE:
        raise UnsafeLibraryError(f"{path}: licence is {licence!r}, not {LICENSE!r}")
    return Library(expected_name, str(manifest["version"]), path.read_text(encoding="utf-8"))


def check_library(library: Library) -> None:
    """Refuse code that would break the page or be rewritten by DVC's placeholder filling."""
    problems = []
    if re.search(r"</script", library.code, flags=re.IGNORECASE):
        problems.append("'</script'")
    problems += [repr(p) for p in PLACEHOLDERS if p in library.code]
    if problems:
        raise UnsafeLibraryError(
            f"{library.name} {library.version} contains {', '.join(problems)}; "
            "it cannot be inlined into the DVC HTML template"
        )


def script_block(library: Library) -> str:
    digest = hashlib.sha256(library.code.encode("utf-8")).hexdigest()
    return (
        f"    <!-- {library.name} {library.version} (npm), {LICENSE}, {COPYRIGHT}."
        f" sha256 {digest} -->\n"
        f"    <script>\n{library.code.rstrip()}\n    </script>"
    )


def render_page(libraries: list[Library]) -> str:
    """Return the HTML template with ``libraries`` inlined, in the order given."""
    for library in libraries:
        check_library(library)
    return PAGE_TEMPLATE.format(libraries="\n".join(script_block(lib) for lib in libraries))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vega", type=Path, required=True, help="vega/build/vega.min.js")
    parser.add_argument(
        "--vega-lite", type=Path, required=True, help="vega-lite/build/vega-lite.min.js"
    )
    parser.add_argument(
        "--vega-embed", type=Path, required=True, help="vega-embed/build/vega-embed.min.js"
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="default: %(default)s"
    )
    args = parser.parse_args(argv)

    paths = (args.vega, args.vega_lite, args.vega_embed)
    try:
        page = render_page([load_library(p, n) for p, n in zip(paths, PACKAGES, strict=True)])
    except (UnsafeLibraryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page, encoding="utf-8")
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
