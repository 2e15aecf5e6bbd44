"""Multi-stage experiment pipelines built from `lit_ir.train` runs."""
