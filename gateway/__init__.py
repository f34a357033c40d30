"""The SMPP carrier gateway."""
