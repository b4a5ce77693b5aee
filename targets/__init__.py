"""sparsecc.targets."""
