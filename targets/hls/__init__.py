"""sparsecc.targets.hls."""
