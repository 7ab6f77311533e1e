"""Grids: a grid file's cells x seeds (`spec`), run as MLflow child runs of one parent (`runner`) by a launcher
(`launchers`: local subprocesses or submitit), and the `cvil-bench grid` command (`cli`). The shipped grid files
live in `bench/grids/`."""
