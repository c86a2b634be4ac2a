"""Stage synthesize: write the embedded default data set in ALL-IDB2's layout.

Params: base.seed, synthesize.*.
Output (--output): a flat folder of `ImNNN_L.tif` crops (L = 1 blast), rendered and written by
`synthesize.workers` processes (0 = one per CPU core); the files do not depend on that number.
A hidden file in it, `.blastcell-synthetic`, says the cells are synthetic: a model trained on
them records it, and `blastcell predict` warns.
With --preview, also a PNG grid of the first images of each class.
"""

from blastcell import SYNTHETIC_MARKER, images, progress, runner, synthesize
from blastcell.files import atomic_dir, atomic_file, write_json
from blastcell.runner import Output


def run(params, *, output: Output, preview: Output | None = None) -> str:
    settings, seed = params.synthesize, params.base.seed
    total = settings.n_blast + settings.n_not_blast
    with atomic_dir(output) as tmp, progress.bar(total, "synthesize") as bar:
        synthesize.write_dataset(tmp, settings, seed, write=images.write, progress=bar.update)
        write_json(tmp / SYNTHETIC_MARKER, {"generator": "blastcell synthesize", "seed": seed})
        if preview is not None:  # inside, so a failure leaves neither output
            # Imported here: the workers re-run this script's imports, and need no matplotlib.
            from blastcell import figures

            with atomic_file(preview) as path:
                figures.save(synthesize.preview(settings, seed), path)
    bound = synthesize.bayes_accuracy(settings.difficulty, settings.n_blast / total)
    return (
        f"{total} images ({settings.n_blast} blast, {settings.n_not_blast} not blast) of "
        f"{settings.image_size} px in {output}, difficulty {settings.difficulty:g} "
        f"(best possible accuracy {bound:.1%})"
    )


if __name__ == "__main__":
    runner.main(run)
