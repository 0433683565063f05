"""The original ``ptycho.raw_data``: ``RawData`` with its validation, counts and probe-mode rules.

Integer ``diff3d`` (raw detector counts, as Ptychodus passes them) is square-rooted to
amplitudes; a ``(modes, N, N)`` probe keeps mode 0; every defect raises ``DataError`` naming the
array, the expected and the found value.
"""

from ptycho_api.rawdata import RawData

__all__ = ["RawData"]
