"""The parts of the original ``ptycho.tf_helper`` that callers outside the model use.

Backend-neutral numpy, whatever backend trained the model (the name is the original's).
"""

from ptycho_api.stitching import reassemble_position

__all__ = ["reassemble_position"]
