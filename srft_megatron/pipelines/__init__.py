"""Pipeline specs shipped with the package: `srft launch NAME` (./launch/pipelines links here)."""
