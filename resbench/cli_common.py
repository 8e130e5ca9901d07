"""What every `resbench` command shares: the console, one-line errors, comma lists."""
from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

console = Console()


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and a non-zero exit: how every user error ends."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def split(value: Optional[str]) -> Optional[list[str]]:
    """'a, b,c' -> ['a', 'b', 'c']; None or '' -> None."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None
