"""Launching the pipeline on clusters: run-dir layout, pipeline specs, nemo-run glue, job reports.

Two ways to run a stage on SLURM share one run-directory layout (`rundir.py`):
hand-submitted sbatch scripts under `slurm/`, and nemo-run recipes (`nemorun.py`, started by
`srft launch` / `driver.py`) that chain stages with `afterok` dependencies. nemo-run
lives in its own venv (`.venv-launch`), so only `nemorun.py` imports it; the rest is stdlib.
"""
