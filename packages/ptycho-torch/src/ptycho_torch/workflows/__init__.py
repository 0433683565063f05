"""Seed-compatible PyTorch workflow entry points (``ptycho_torch.workflows.components``)."""
