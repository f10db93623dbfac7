"""Training configs shipped with the package: `srft train --config NAME` (./configs links here)."""
