"""Sandbox extension for codedeploy (being built)."""


def install() -> None:
    pass


def reset() -> None:
    pass
