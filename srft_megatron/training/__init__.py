"""`srft train`: config, data, step-weighted loss, trainer loop, checkpoints, metrics."""
