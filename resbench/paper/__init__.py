"""The paper as data: its tables and figures declared (experiments/*.toml), its recipes, how a run departs from it."""
