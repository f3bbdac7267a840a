"""Scoped, persistent, atomic key-value state: the ``StateManager`` behind ``ctx.state``."""
