"""Workflow entry points under the original module path ``ptycho.workflows.components``."""
