"""Sandbox extension for codebuild (being built)."""


def install() -> None:
    pass


def reset() -> None:
    pass
