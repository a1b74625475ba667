"""Example applications built with tether (the Titanium sales research agent)."""
