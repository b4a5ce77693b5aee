"""sparsecc.frontends."""
