"""Checks on written pictures: a real PNG, of the stated size, not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A white page with a few axes lines has a pixel std of ~0.05; an empty white one 0.0.
BLANK_STD = 0.03


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def check_png(path: Path, size: tuple[int, int]) -> float:
    """Assert a valid PNG of ``size`` (width, height) with pixel std above the floor; return the std."""
    from matplotlib import image

    assert png_size(path) == size, f"{path.name}: {png_size(path)} != {size}"
    pixels = np.asarray(image.imread(path), dtype=float)  # decodes the whole file: a truncated one fails
    assert pixels.shape[:2] == (size[1], size[0])
    std = float(pixels[..., :3].std())
    assert std > BLANK_STD, f"{path.name} looks blank (pixel std {std:.4f})"
    return std
