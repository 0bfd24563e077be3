"""Kits: who owns one (claim), who else may use it (members), and the access that follows."""
