"""Routing [pure]: numbers (numbers.py), which carriers take a recipient and in what order (router.py), and
the words each carrier blocks (content.py). Import the modules themselves."""
