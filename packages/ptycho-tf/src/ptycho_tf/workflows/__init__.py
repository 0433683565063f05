"""Seed-compatible workflow entry points of the TensorFlow backend (see ``components``)."""
