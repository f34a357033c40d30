"""The admin socket: the operator's commands (docs/admin.md)."""
