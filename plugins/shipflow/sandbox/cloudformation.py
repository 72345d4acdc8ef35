"""Sandbox extension for cloudformation (being built)."""


def install() -> None:
    pass


def reset() -> None:
    pass
