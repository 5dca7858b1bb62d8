"""Leaf helpers every other package may use: no qcdaemon imports beyond ``errors``."""
