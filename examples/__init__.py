"""sparsecc.examples."""
