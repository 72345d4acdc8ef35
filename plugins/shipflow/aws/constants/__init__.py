"""See shipflow.aws."""
