"""Tether: connect a multi-user AI application to remote MCP servers."""

from tether.errors import TetherError

__all__ = ["TetherError"]
