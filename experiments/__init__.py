"""Experiment configs, the comparison runner and the ichkit command line."""
