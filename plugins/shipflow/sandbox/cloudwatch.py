"""Sandbox extension for cloudwatch (being built)."""


def install() -> None:
    pass


def reset() -> None:
    pass
