"""Stage validate: check the whole params.yaml before any other stage runs.

Params: all of params.yaml (DVC tracks every key of it for this stage, so any change of a key
or value re-runs it, even of a misspelt key that no stage declares). Input: params.yaml.
Output: a small marker file whose content never changes while the file is valid, so a valid
edit re-runs only the stages whose declared params changed. The stages that read input data
depend on the marker and every other stage runs after them: an unknown key or section, a wrong
type or an out-of-range value stops `dvc repro` here, with one line naming the key, before DVC
removes any stage's outputs.

It also removes the temporaries that killed stages left beside their outputs
(`files.remove_temporaries`): a stage removes its own when it next runs, but DVC may restore it
from its run-cache instead, running nothing, and this stage runs whenever params.yaml changes.
"""

from pathlib import Path

from blastcell import runner
from blastcell.files import remove_temporaries, write_json
from blastcell.runner import Output

# The folders, beside params.yaml, that hold every output of dvc.yaml and cv/dvc.yaml (in
# subfolders too), and so the temporaries written beside them.
OUTPUT_FOLDERS = ("data", "models", "reports", "metrics", "plots", "cv")


def run(params, *, output: Output, params_file: Path) -> str:
    """The runner has loaded and checked all of `--params`: remove what killed stages left and
    mark it valid."""
    root = params_file.parent
    removed = remove_temporaries(root / folder for folder in OUTPUT_FOLDERS)
    write_json(output, {"params": "valid"})
    if removed:
        left = ", ".join(str(path.relative_to(root)) for path in removed)
        return f"params are valid; removed what killed stages left: {left}"
    return "params are valid"


if __name__ == "__main__":
    runner.main(run)
