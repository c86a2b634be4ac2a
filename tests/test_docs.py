"""The prose cannot drift from the code: every list in the docs that the code owns is checked
against its owner here (the README's figures are checked in tests/test_readme.py).

- docs/pipeline.md's stage table, one row per stage of dvc.yaml: its script, the params it reads
  (exactly the stage's `params:` in dvc.yaml) and every output, metric and plot it writes;
- each stage script's "Params:" line (stages/*.py), against its stage in dvc.yaml or cv/dvc.yaml;
- the lists of stages in the docs: the diagram, the table's order, the library's stage modules,
  what `dvc repro cv/dvc.yaml` runs first, the stages that draw a progress bar;
- the lists of benchmarks, against bench/run.py's `BENCHMARKS`;
- the values of `model.input_scaling` where the docs say what the model's first layer does;
- every pointer to a page (`docs/x.md`, `README`, with `#anchor` or `, Section title`) in the
  comments of dvc.yaml, cv/dvc.yaml and params.yaml.

The params notation, in the table and in the docstrings: items separated by commas, semicolons
or "and"; each item is `section.key`, `section.*` (every key that src/blastcell/params.py
declares in that section), `section.* but section.key` (all but that one), `all of params.yaml`,
`external.<name>` (the external stage's own set), or "every param of the X, Y and Z stages"
(the union of those stages' params in dvc.yaml).
Backticks and (parenthesised remarks) are ignored.
"""

import ast
import re
from pathlib import Path

import pytest
import yaml
from helpers import declared_params, section_keys

from blastcell import params

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_DOC = ROOT / "docs" / "pipeline.md"
ALL = "all of params.yaml"


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def stages_of(dvc_file: str) -> dict[str, dict]:
    """The stages of a dvc.yaml as written; a `foreach` stage is its `do` template."""
    raw = yaml.safe_load(read(ROOT / dvc_file))["stages"]
    return {name: stage.get("do", stage) for name, stage in raw.items()}


STAGES = stages_of("dvc.yaml")
CV_STAGES = stages_of("cv/dvc.yaml")
EVERY_STAGE = {**STAGES, **CV_STAGES}
PARAMS_YAML = yaml.safe_load(read(ROOT / "params.yaml"))


# --- what dvc.yaml says ---------------------------------------------------------------------


def script(stage: dict) -> str:
    return re.search(r"python (stages/\S+\.py)", stage["cmd"]).group(1)


def outputs(stage: dict) -> list[str]:
    """Every out, metric and plot path, with a foreach stage's `${key}` written `<name>`."""
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            paths.extend([entry] if isinstance(entry, str) else list(entry))
    return [p.replace("${key}", "<name>") for p in paths]


def resolve(path: str) -> str:
    """A dvc.yaml path with `${section.key}` taken from params.yaml."""

    def value(match: re.Match) -> str:
        section, key = match.group(1).split(".")
        return str(PARAMS_YAML[section][key])

    return re.sub(r"\$\{(\w+\.\w+)\}", value, path).rstrip("/")


def upstream(name: str) -> set[str]:
    """The stages whose outputs `name` depends on, directly or not."""
    producers = {resolve(out): s for s, stage in STAGES.items() for out in outputs(stage)}
    found, todo = set(), [name]
    while todo:
        for dep in EVERY_STAGE[todo.pop()].get("deps", []):
            maker = producers.get(resolve(dep))
            if maker is not None and maker not in found:
                found.add(maker)
                todo.append(maker)
    return found


# --- the params notation ----------------------------------------------------------------------


def strip_remarks(text: str) -> str:
    """`text` without backticks and without (parenthesised remarks), nested ones included."""
    text = text.replace("`", "")
    while True:
        shorter = re.sub(r"\s*\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


def expand_params(text: str, where: str) -> set[str]:
    """The params keys that a list in the notation of this module's docstring names."""
    text = strip_remarks(text).replace("\n", " ")

    def union(match: re.Match) -> str:
        names = re.split(r",\s*|\s+and\s+", match.group(1))
        return "@" + "+".join(names)

    text = re.sub(r"every param of the ((?:\w+(?:,\s*|\s+and\s+))*\w+) stages?", union, text)
    keys: list[str] = []
    for item in re.split(r"\s*(?:[,;]|\band\b)\s*", text.strip().rstrip(".")):
        if not item:
            continue
        if item == ALL:
            keys.append(ALL)
        elif item.startswith("@"):  # several stages may read one key: each counts once
            union = set()
            for name in item[1:].split("+"):
                assert name in STAGES, f"{where}: 'every param of the ... stages': no stage {name}"
                union |= declared_params(STAGES[name])
            keys.extend(sorted(union))
        elif m := re.fullmatch(r"(\w+)\.\*(?: but (\w+)\.(\w+))?", item):
            section, but_section, but_key = m.groups()
            assert section in params.Params.model_fields, f"{where}: no params section {section}"
            expanded = section_keys(section)
            if but_key is not None:
                excluded = f"{but_section}.{but_key}"
                assert excluded in expanded, f"{where}: '{item}': no key {excluded}"
                expanded.remove(excluded)
            keys.extend(expanded)
        elif re.fullmatch(r"\w+\.\w+", item):
            keys.append(item)
        elif item == "external.<name>":  # the external stage's own set, `external.${key}`
            keys.append("external.${key}")
        else:
            pytest.fail(f"{where}: cannot read {item!r} as params (see tests/test_docs.py)")
    twice = sorted({key for key in keys if keys.count(key) > 1 and key != ALL})
    assert not twice, f"{where}: named twice: {twice}"
    return set(keys)


def assert_same_params(named: set[str], stage: str, where: str) -> None:
    expected = declared_params(EVERY_STAGE[stage])
    missing, extra = sorted(expected - named), sorted(named - expected)
    assert not missing, f"{where}: stage {stage}: params missing {missing}"
    assert not extra, f"{where}: stage {stage}: params not in its dvc.yaml params: {extra}"


# --- docs/pipeline.md's stage table -------------------------------------------------------------


def stage_table() -> list[list[str]]:
    """The rows of the table under "## The stages", as cells (stage, script, params, writes)."""
    text = read(PIPELINE_DOC)
    start = text.index("| stage | script |")
    table = text[start:].split("\n\n", 1)[0].splitlines()
    return [[c.strip() for c in row.strip().strip("|").split("|")] for row in table[2:]]


def table_rows() -> dict[str, list[str]]:
    return {row[0].strip("`"): row for row in stage_table()}


def expand_braces(span: str) -> list[str]:
    """`a/{b,c}.json` -> ['a/b.json', 'a/c.json'], as a shell expands it."""
    m = re.search(r"\{([^{}]*)\}", span)
    if not m:
        return [span]
    return [
        path
        for part in m.group(1).split(",")
        for path in expand_braces(span[: m.start()] + part + span[m.end() :])
    ]


def named_paths(cell: str) -> list[str]:
    """The paths that a cell's code spans name, braces expanded."""
    return [p for span in re.findall(r"`([^`]+)`", cell) for p in expand_braces(span)]


def covers(named: str, out: str) -> bool:
    """Whether a path named in prose is the output `out` or inside it (a folder output)."""
    named = named.rstrip("/")
    return named == out or named.startswith(out + "/")


@pytest.mark.parametrize("stage", list(STAGES))
def test_the_stage_table_names_the_script_of_each_stage(stage):
    row = table_rows().get(stage)
    assert row is not None, f"docs/pipeline.md's stage table has no row for stage {stage}"
    runs = script(STAGES[stage])
    assert row[1] == f"`{runs}`", (
        f"docs/pipeline.md's stage table: {stage} runs {runs}, not {row[1]}"
    )


@pytest.mark.parametrize("stage", list(STAGES))
def test_the_stage_table_lists_exactly_the_params_of_each_stage(stage):
    row = table_rows().get(stage)
    assert row is not None, f"docs/pipeline.md's stage table has no row for stage {stage}"
    named = expand_params(row[2], f"docs/pipeline.md, the row of {stage}")
    assert_same_params(named, stage, "docs/pipeline.md's stage table")


@pytest.mark.parametrize("stage", list(STAGES))
def test_the_stage_table_lists_every_output_of_each_stage(stage):
    row = table_rows().get(stage)
    assert row is not None, f"docs/pipeline.md's stage table has no row for stage {stage}"
    outs, named = outputs(STAGES[stage]), named_paths(row[3])
    missing = [out for out in outs if not any(covers(p, out) for p in named)]
    assert not missing, f"docs/pipeline.md's stage table: stage {stage}: outputs missing {missing}"
    tracked = ("data/", "models/", "reports/", "metrics/", "plots/")
    extra = [p for p in named if p.startswith(tracked) and not any(covers(p, out) for out in outs)]
    assert not extra, f"docs/pipeline.md's stage table: stage {stage}: not its outputs: {extra}"


def test_the_stage_table_has_a_row_per_stage_in_an_order_the_pipeline_runs():
    order = [row[0].strip("`") for row in stage_table()]
    assert sorted(order) == sorted(STAGES), (
        f"docs/pipeline.md's stage table: rows {order}, dvc.yaml's stages {list(STAGES)}"
    )
    for i, name in enumerate(order):
        later = sorted(upstream(name) & set(order[i + 1 :]))
        assert not later, f"docs/pipeline.md's stage table: {name} is listed before {later}"


# --- each stage script's docstring -----------------------------------------------------------


def docstring_params(path: Path) -> str:
    """The list after "Params:" in a script's module docstring, up to the sentence's end."""
    doc = ast.get_docstring(ast.parse(read(path))) or ""
    assert "Params:" in doc, f"{path.relative_to(ROOT)}: the module docstring has no 'Params:'"
    after = strip_remarks(doc.split("Params:", 1)[1])
    return re.split(r"\.(?=\s|$)", after, maxsplit=1)[0]


@pytest.mark.parametrize("stage", list(EVERY_STAGE))
def test_each_stage_script_names_exactly_its_params(stage):
    path = ROOT / script(EVERY_STAGE[stage])
    where = f"{path.relative_to(ROOT)}'s docstring"
    assert_same_params(expand_params(docstring_params(path), where), stage, where)


def test_every_stage_script_runs_in_a_stage():
    scripts = {script(stage) for stage in EVERY_STAGE.values()}
    on_disk = {f"stages/{p.name}" for p in (ROOT / "stages").glob("*.py")}
    assert on_disk == scripts, f"in stages/ but no stage runs them: {sorted(on_disk - scripts)}"


# --- the lists of stages --------------------------------------------------------------------


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text)


def test_the_stage_diagram_shows_every_stage():
    section = read(PIPELINE_DOC).split("## The stages", 1)[1]
    diagram = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    shown = words(diagram)
    assert sorted(shown) == sorted(STAGES), (
        f"docs/pipeline.md's stage diagram: {shown}, dvc.yaml's stages {list(STAGES)}"
    )


def test_the_layout_lists_the_library_module_of_every_stage():
    layout = read(PIPELINE_DOC).split("## Layout", 1)[1]
    listed = layout.split("named as the stage:", 1)[1].split("the formats", 1)[0]
    named = [name.strip() for name in listed.split(",")]
    expected = [s for s in EVERY_STAGE if (ROOT / "src" / "blastcell" / f"{s}.py").exists()]
    assert sorted(named) == sorted(expected), (
        f"docs/pipeline.md's layout: stage modules {named}, the stages' own modules {expected}"
    )


def test_the_layout_names_every_library_module():
    layout = read(PIPELINE_DOC).split("## Layout", 1)[1]
    block = layout.split("src/blastcell/", 1)[1].split("data/  models/", 1)[0]
    named = set(re.findall(r"\b([a-z_]+)\b", strip_remarks(block)))
    modules = {p.stem for p in (ROOT / "src" / "blastcell").glob("*.py")}
    modules -= {"__init__", "__main__"}
    assert sorted(modules - named) == [], "docs/pipeline.md's layout leaves these modules out"


def stage_list(text: str) -> list[str]:
    """The stages in a list like "validate, copies and evaluate's bootstrap"; items that do not
    start with a stage's name are left out only if they name `blastcell` commands."""
    names = []
    for item in re.split(r",\s*|\s+and\s+", strip_remarks(" ".join(text.split()))):
        if item.startswith("blastcell"):
            continue
        first = item.split()[0].removesuffix("'s")
        assert first in EVERY_STAGE, f"{item!r} in {text!r} does not start with a stage's name"
        names.append(first)
    return names


def test_repeated_splits_say_which_stages_run_first():
    page = read(ROOT / "docs" / "repeated-splits.md")
    said = re.search(r"`dvc repro cv/dvc.yaml` runs\s+(.*?)\s+first if needed", page, flags=re.S)
    assert said, "docs/repeated-splits.md no longer says what `dvc repro cv/dvc.yaml` runs first"
    named, expected = stage_list(said.group(1)), upstream("cv")
    assert sorted(named) == sorted(expected), (
        f"docs/repeated-splits.md: runs first {named}; cv depends on {sorted(expected)}"
    )


def test_the_stages_that_draw_a_progress_bar():
    page = read(ROOT / "docs" / "your-own-data.md")
    said = re.search(r"the long ones \(([^)]*)\)\s+show a progress bar", page, flags=re.S)
    assert said, "docs/your-own-data.md no longer lists the stages that draw a progress bar"
    named = stage_list(said.group(1))
    expected = [
        s for s, stage in EVERY_STAGE.items() if "src/blastcell/progress.py" in stage["deps"]
    ]
    assert sorted(named) == sorted(expected), (
        f"docs/your-own-data.md: progress bars in {named}; stages using progress.py {expected}"
    )


# --- the benchmarks ----------------------------------------------------------------------------


def benchmarks() -> dict[str, str]:
    """bench/run.py's BENCHMARKS (name: module), read without running bench/run.py."""
    tree = ast.parse(read(ROOT / "bench" / "run.py"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["BENCHMARKS"]:
            return ast.literal_eval(node.value)
    raise AssertionError("bench/run.py has no BENCHMARKS")


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]


def test_every_list_of_benchmarks_in_the_docs_names_them_all():
    """A paragraph (or a code block) naming three or more benchmark scripts is a list of them."""
    files = [f"{module}.py" for module in benchmarks().values()]
    lists = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for paragraph in paragraphs(read(page)):
            named = [f for f in files if re.search(rf"(?<![\w/]){re.escape(f)}", paragraph)]
            if len(named) >= 3:
                lists += 1
                missing = [f for f in files if f not in named]
                assert not missing, (
                    f"{page.relative_to(ROOT)}: a list of benchmarks lacks {missing}"
                )
    assert lists >= 1  # docs/pipeline.md's layout


def test_the_layout_lists_what_bench_run_runs():
    layout = read(PIPELINE_DOC).split("## Layout", 1)[1]
    listed = re.search(r"run\.py runs them all\s*\(([^)]*)\)", layout).group(1)
    named = [name.strip() for name in listed.split(",")]
    expected = [f"{module}.py" for module in benchmarks().values()]
    assert named == expected, f"docs/pipeline.md's layout: {named}; bench/run.py runs {expected}"


def test_bench_run_docstring_describes_every_benchmark():
    doc = ast.get_docstring(ast.parse(read(ROOT / "bench" / "run.py")))
    described = re.findall(r"^(\w+) {2,}\S", doc, flags=re.M)
    assert sorted(described) == sorted(benchmarks()), (
        f"bench/run.py's docstring describes {described}; it runs {list(benchmarks())}"
    )


# --- what the model does to pixels -----------------------------------------------------------


def test_the_pipeline_page_says_what_each_input_scaling_does():
    prose = " ".join(read(PIPELINE_DOC).split())
    sentence = re.search(r"Scaling the pixels is the model's first layer \((.*?)\), so", prose)
    assert sentence, "docs/pipeline.md no longer says how the model's first layer scales pixels"
    field = params.ModelParams.model_fields["input_scaling"]
    for value in params.choices(field.annotation):
        assert f"`{value}`" in sentence.group(1), f"docs/pipeline.md: input_scaling {value}"
    default = PARAMS_YAML["model"]["input_scaling"]
    assert f"`{default}`, the default" in sentence.group(1), f"docs/pipeline.md: default {default}"


# --- pointers to the docs in the YAML files' comments ----------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def headings(page: Path) -> list[str]:
    return [h.strip() for h in re.findall(r"^#+ (.*)$", read(page), flags=re.M)]


def comments(path: Path) -> list[str]:
    """The comments of a YAML file, each run of commented lines joined into one text."""
    runs, current = [], []
    for line in read(path).splitlines():
        m = re.search(r"(?:^|\s)#(.*)$", line)
        if m:
            current.append(m.group(1).strip())
        elif current:
            runs.append(" ".join(current))
            current = []
    return [*runs, " ".join(current)] if current else runs


POINTER = re.compile(  # the file, then `#anchor` or `, Title` up to a closing parenthesis
    r"(?P<file>README(?:\.md)?|docs/[\w.-]+\.md)"
    r"(?:#(?P<anchor>[\w-]+)|, (?P<title>[^)]+?)(?=\)|$))?"
)


COMMENTED = ("dvc.yaml", "cv/dvc.yaml", "params.yaml")


def pointers() -> list[tuple[str, str]]:
    """(file, pointer) for every pointer to a page in the comments of the YAML files."""
    return [
        (name, m.group(0))
        for name in COMMENTED
        for comment in comments(ROOT / name)
        for m in POINTER.finditer(comment)
    ]


def test_no_comment_points_to_the_docs_without_naming_a_page():
    for name in COMMENTED:
        for comment in comments(ROOT / name):
            vague = re.findall(r"\b(?:see|in) (?:the )?(?:docs|README)\b(?![/.\w])", comment)
            assert not vague, f"{name}: {vague[0]!r} points to no page: name docs/<page>.md"


@pytest.mark.parametrize(("file", "pointer"), pointers())
def test_each_pointer_to_the_docs_in_a_comment_resolves(file, pointer):
    m = POINTER.fullmatch(pointer)
    page = ROOT / ("README.md" if m["file"].startswith("README") else m["file"])
    assert page.exists(), f"{file}: {pointer!r}: no {page.relative_to(ROOT)}"
    titles = headings(page)
    if m["anchor"]:
        assert m["anchor"] in map(slug, titles), f"{file}: {pointer!r}: no such anchor"
    if m["title"]:
        wanted = " ".join(m["title"].split()).lower()
        found = [t for t in titles if t.replace("`", "").lower().startswith(wanted)]
        assert found, f"{file}: {pointer!r}: {page.name} has no heading {m['title']!r}"
