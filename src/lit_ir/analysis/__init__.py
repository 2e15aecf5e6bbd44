"""Analyses of trained models (query prediction with an MLM head, ...)."""
