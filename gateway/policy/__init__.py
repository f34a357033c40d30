"""Compliance policy [pure]: opt-out and opt-in keywords in replies (keywords.py), signatures and opt-out
wording in texts (content.py), and send windows in the recipient's time zones (windows.py). Import the
modules themselves."""
