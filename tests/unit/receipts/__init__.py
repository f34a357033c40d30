"""Delivery receipt parser and carrier message-id normalisation."""
