"""Studies, Ray workers, storage, objective and pruning, ensembles, export, predict, the CLI."""
