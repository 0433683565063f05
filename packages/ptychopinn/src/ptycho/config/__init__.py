"""Configuration dataclasses under the original module path ``ptycho.config.config``."""
