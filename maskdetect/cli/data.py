"""CLI commands: placeholder registered so the parser builds; filled in by its owner."""


def register(subparsers) -> None:
    pass
