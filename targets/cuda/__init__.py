"""sparsecc.targets.cuda."""
