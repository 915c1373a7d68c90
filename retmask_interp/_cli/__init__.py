"""Subcommand groups of ``retmask``; see ``retmask_interp.cli``."""
