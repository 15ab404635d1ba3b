"""What the made images show: the characters and fonts to type them in, and the pen strokes of
digits and of non-digits to draw by hand. Tables only; the renderers that turn them into pixels are
in render.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np

FONTS = sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))
TEXT_FONTS = [f for f in FONTS if f.stem.startswith(("DejaVu", "cm", "STIXGeneral")) and f.stem not in ("cmex10", "cmsy10")]
DIGITS = "0123456789"
# Letters and symbols that no one would call a digit: O, I, l, S, Z, B, G, b, g, q, /, (, !, ... are
# left out on purpose, since written by hand they are often how a 0, 1, 5, 2, 8, 6 or 9 looks.
# Nor a mark that to_mnist, which scales any ink up to MNIST's box, would make into one: ' , ° | become 1s and
# 0s; nor Ø, ß, Ξ, ?: a slashed zero, a B-like 8, a 3, a 2.
NOT_DIGITS = (
    "ACDEFHJKLMNPRTUVWXYacdefhkmnprtuvwxy#$%&@+=<>*~^{};€£¥§¶©®ΩπΣλμ∞√∫≈≠♥★☺✓✗→←↑↓▲■●◆♪"
    '-_.:"…•×÷±¬‰¤ÆæÐÞŒœ'
    + "ДЖИЛФЦШЩЫЮЯжилфцшщыюяΓΔΛΠΦΨγηκξφψω"
    + "♣♠♦☀☂☯✿✚⌘♞☎✈⚑"
    # Armenian, Georgian and Hebrew letters, less those that read as a digit once to_mnist has them
    # (Գ Զ Յ Ց Օ, ბ ვ კ პ ჰ, ו ז י ס ר, ...: checked by eye on a contact sheet of each, three fonts)
    + "ԲԵԷԸԹԺԻԼԽԿՃՄՆՈՊՌՍՎՐՒՓՔ"
    + "დთლოჟრსტუქღჩძჭჯ"
    + "אבגהחטכמנעצקשת"
)
# Thin upright and bracket-like marks, which to_mnist stretches to a digit's height: what a "1" is
# most often confused with. Not "|", "(" or ")": drawn by hand, those are how many people write a 1;
# nor "⌉", a 7 with an upright stem, or "¦", a 1 with a gap.
UPRIGHT_MARKS = "!¡[]⟦⟧⌈⌊⌋†‡{}"


def _arc(cx, cy, rx, ry, start, end, n=24) -> np.ndarray:
    """Points on an ellipse from angle `start` to `end` in degrees (0 = right, 90 = down)."""
    angle = np.deg2rad(np.linspace(start, end, n))
    return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], 1)


def _line(*points) -> np.ndarray:
    return np.array(points, np.float32)


# Pen strokes of each shape, in a unit square (x right, y down), a variant or two where people differ.
DRAWN_DIGITS: dict[str, list[Callable[[], list[np.ndarray]]]] = {
    "0": [lambda: [_arc(0.5, 0.5, 0.3, 0.48, -90, 270)]],
    "1": [
        lambda: [_line((0.5, 0.02), (0.5, 0.98))],
        lambda: [_line((0.3, 0.2), (0.55, 0.02), (0.55, 0.98))],
        lambda: [_line((0.3, 0.2), (0.55, 0.02), (0.55, 0.98)), _line((0.3, 0.98), (0.8, 0.98))],
        lambda: [_line((0.2, 0.4), (0.6, 0.02), (0.6, 0.98))],  # the long flag of continental Europe
        lambda: [_line((0.5, 0.02), (0.5, 0.98)), _line((0.25, 0.98), (0.75, 0.98))],  # a base, no flag
    ],
    "2": [lambda: [np.concatenate([_arc(0.5, 0.3, 0.3, 0.28, 180, 360 + 30), _line((0.2, 0.98), (0.85, 0.98))])]],
    "3": [lambda: [np.concatenate([_arc(0.5, 0.27, 0.28, 0.25, 200, 450), _arc(0.5, 0.74, 0.32, 0.24, 270, 520)])]],
    "4": [
        lambda: [_line((0.6, 0.02), (0.1, 0.65), (0.9, 0.65)), _line((0.65, 0.3), (0.65, 0.98))],
        lambda: [_line((0.2, 0.02), (0.15, 0.55), (0.85, 0.55)), _line((0.7, 0.02), (0.7, 0.98))],
    ],
    "5": [lambda: [_line((0.8, 0.02), (0.25, 0.02), (0.22, 0.42)), _arc(0.5, 0.68, 0.33, 0.3, 230, 500)]],
    "6": [lambda: [np.concatenate([_arc(0.7, 0.55, 0.5, 0.53, 260, 180), _arc(0.5, 0.72, 0.3, 0.26, 180, 540)])]],
    "7": [
        lambda: [_line((0.1, 0.02), (0.9, 0.02), (0.4, 0.98))],
        lambda: [_line((0.1, 0.02), (0.9, 0.02), (0.4, 0.98)), _line((0.35, 0.5), (0.8, 0.5))],
        lambda: [_line((0.1, 0.2), (0.1, 0.02), (0.9, 0.02), (0.45, 0.98))],  # a serif down at the left
    ],
    "8": [lambda: [_arc(0.5, 0.26, 0.24, 0.24, 90, 450), _arc(0.5, 0.74, 0.3, 0.25, -90, 270)]],
    "9": [
        lambda: [_arc(0.5, 0.3, 0.3, 0.28, 0, 360), _line((0.8, 0.3), (0.75, 0.98))],
        lambda: [np.concatenate([_arc(0.5, 0.3, 0.3, 0.28, 0, 360), _arc(0.3, 0.3, 0.5, 0.68, 0, 100)])],
    ],
}

DRAWN_SHAPES: list[Callable[[], list[np.ndarray]]] = [
    lambda: [_line((0.1, 0.98), (0.5, 0.02), (0.9, 0.98)), _line((0.27, 0.6), (0.73, 0.6))],  # A
    lambda: [_line((0.15, 0.02), (0.15, 0.98)), _line((0.85, 0.02), (0.85, 0.98)), _line((0.15, 0.5), (0.85, 0.5))],  # H
    lambda: [_line((0.85, 0.02), (0.15, 0.02), (0.15, 0.98), (0.85, 0.98)), _line((0.15, 0.5), (0.7, 0.5))],  # E
    lambda: [_line((0.85, 0.02), (0.15, 0.02), (0.15, 0.98)), _line((0.15, 0.5), (0.7, 0.5))],  # F
    lambda: [_line((0.15, 0.02), (0.15, 0.98)), _line((0.85, 0.02), (0.15, 0.55), (0.85, 0.98))],  # K
    lambda: [_line((0.1, 0.98), (0.1, 0.02), (0.5, 0.6), (0.9, 0.02), (0.9, 0.98))],  # M
    lambda: [_line((0.15, 0.98), (0.15, 0.02), (0.85, 0.98), (0.85, 0.02))],  # N
    lambda: [_line((0.05, 0.02), (0.95, 0.02)), _line((0.5, 0.02), (0.5, 0.98))],  # T
    lambda: [_line((0.1, 0.02), (0.5, 0.98), (0.9, 0.02))],  # V
    lambda: [_line((0.02, 0.02), (0.25, 0.98), (0.5, 0.3), (0.75, 0.98), (0.98, 0.02))],  # W
    lambda: [_line((0.1, 0.02), (0.9, 0.98)), _line((0.9, 0.02), (0.1, 0.98))],  # X
    lambda: [_line((0.1, 0.02), (0.5, 0.5), (0.9, 0.02)), _line((0.5, 0.5), (0.5, 0.98))],  # Y
    lambda: [_line((0.15, 0.98), (0.15, 0.02)), _arc(0.15, 0.28, 0.6, 0.26, -90, 90)],  # P
    lambda: [_line((0.15, 0.98), (0.15, 0.02)), _arc(0.15, 0.5, 0.7, 0.48, -90, 90)],  # D
    lambda: [_arc(0.55, 0.5, 0.4, 0.48, 45, 315)],  # C
    lambda: [_line((0.15, 0.02), (0.15, 0.98), (0.85, 0.98))],  # L
    lambda: [_line((0.15, 0.02), (0.15, 0.7)), _arc(0.5, 0.7, 0.35, 0.28, 180, 0), _line((0.85, 0.7), (0.85, 0.02))],  # U
    lambda: [
        _arc(0.5, 0.5, 0.48, 0.48, 0, 360),
        _line((0.33, 0.35), (0.33, 0.38)),
        _line((0.67, 0.35), (0.67, 0.38)),
        _arc(0.5, 0.55, 0.25, 0.2, 20, 160),
    ],  # smiley
    lambda: [_arc(0.5, 0.5, 0.48, 0.48, 0, 360), _line((0.2, 0.2), (0.8, 0.8)), _line((0.8, 0.2), (0.2, 0.8))],  # circled x
    lambda: [_line((0.5, 0.02), (0.5, 0.98)), _line((0.02, 0.5), (0.98, 0.5))],  # plus
    lambda: [
        _line((0.3, 0.02), (0.2, 0.98)),
        _line((0.75, 0.02), (0.65, 0.98)),
        _line((0.05, 0.33), (0.95, 0.33)),
        _line((0.02, 0.67), (0.92, 0.67)),
    ],  # hash
    lambda: [_line((0.02, 0.55), (0.35, 0.95), (0.98, 0.05))],  # tick
    lambda: [_line((0.02, 0.5), (0.98, 0.5), (0.7, 0.2)), _line((0.98, 0.5), (0.7, 0.8))],  # arrow
    lambda: [_line((0.5, 0.02), (0.98, 0.98), (0.02, 0.98), (0.5, 0.02))],  # triangle
    lambda: [_line((0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98), (0.02, 0.02))],  # square
    lambda: [_line(*[(0.5 + 0.48 * np.sin(a), 0.5 - 0.48 * np.cos(a)) for a in np.deg2rad(np.arange(0, 721, 144))])],  # star
    lambda: [
        np.concatenate(
            [_arc(0.3, 0.3, 0.22, 0.22, 140, 360), _line((0.98, 0.45), (0.5, 0.98), (0.02, 0.45)), _arc(0.7, 0.3, 0.22, 0.22, 180, 40)]
        )
    ],  # heart
    lambda: [_line((0.1, 0.98), (0.1, 0.4), (0.5, 0.02), (0.9, 0.4), (0.9, 0.98), (0.1, 0.98))],  # house
    lambda: [np.stack([np.linspace(0.02, 0.98, 40), 0.5 + 0.3 * np.sin(np.linspace(0, 4 * np.pi, 40))], 1)],  # wave
    lambda: [_line((0.02, 0.8), (0.25, 0.2), (0.5, 0.8), (0.75, 0.2), (0.98, 0.8))],  # zigzag
    lambda: [
        np.stack(
            [
                0.5 + np.linspace(0, 0.48, 80) * np.cos(np.linspace(0, 6 * np.pi, 80)),
                0.5 + np.linspace(0, 0.48, 80) * np.sin(np.linspace(0, 6 * np.pi, 80)),
            ],
            1,
        )
    ],  # spiral
    lambda: [_arc(0.5, 0.5, 0.48, 0.48, 0, 360), _arc(0.5, 0.5, 0.2, 0.2, 0, 360)],  # rings
    lambda: [_line((0.15, 0.98), (0.15, 0.02)), _arc(0.15, 0.28, 0.6, 0.26, -90, 90), _line((0.3, 0.54), (0.85, 0.98))],  # R
    lambda: [_line((0.2, 0.02), (0.2, 0.98)), np.concatenate([_arc(0.5, 0.6, 0.3, 0.22, 180, 360), _line((0.8, 0.6), (0.8, 0.98))])],  # h
    lambda: [_line((0.2, 0.3), (0.2, 0.98)), np.concatenate([_arc(0.5, 0.52, 0.3, 0.22, 180, 360), _line((0.8, 0.52), (0.8, 0.98))])],  # n
    lambda: [
        _line((0.05, 0.3), (0.05, 0.98)),
        np.concatenate([_arc(0.27, 0.5, 0.22, 0.2, 180, 360), _line((0.49, 0.5), (0.49, 0.98))]),
        np.concatenate([_arc(0.72, 0.5, 0.23, 0.2, 180, 360), _line((0.95, 0.5), (0.95, 0.98))]),
    ],  # m
    lambda: [np.concatenate([_line((0.15, 0.55), (0.85, 0.55)), _arc(0.5, 0.55, 0.35, 0.43, 360, 60)])],  # e
    lambda: [_line((0.3, 0.25), (0.3, 0.98)), _arc(0.6, 0.55, 0.3, 0.25, 180, 300)],  # r
    lambda: [_line((0.2, 0.02), (0.2, 0.98)), _line((0.75, 0.4), (0.2, 0.72), (0.8, 0.98))],  # k
    lambda: [
        _arc(0.5, 0.5, 0.22, 0.22, 0, 360),
        *[
            _line((0.5 + 0.3 * np.cos(a), 0.5 + 0.3 * np.sin(a)), (0.5 + 0.48 * np.cos(a), 0.5 + 0.48 * np.sin(a)))
            for a in np.arange(8) * np.pi / 4
        ],
    ],  # sun
    lambda: [*[_arc(0.5 + 0.25 * np.cos(a), 0.5 + 0.25 * np.sin(a), 0.2, 0.2, 0, 360) for a in np.arange(5) * 2 * np.pi / 5]],  # flower
    lambda: [
        _line((0.5, 0.02), (0.1, 0.7), (0.9, 0.7), (0.5, 0.02)),
        _line((0.45, 0.7), (0.45, 0.98)),
        _line((0.55, 0.7), (0.55, 0.98)),
    ],  # tree
    lambda: [np.concatenate([_arc(0.45, 0.5, 0.4, 0.25, -150, 150), _line((0.98, 0.25), (0.98, 0.75), (0.1, 0.375))])],  # fish
    lambda: [_line((0.6, 0.02), (0.25, 0.55), (0.7, 0.45), (0.35, 0.98))],  # lightning
    lambda: [
        np.concatenate([_arc(0.25, 0.6, 0.2, 0.2, 90, 270), _arc(0.5, 0.4, 0.22, 0.25, 180, 360), _arc(0.75, 0.6, 0.2, 0.2, 270, 450)]),
        _line((0.25, 0.8), (0.75, 0.8)),
    ],  # cloud
    lambda: [np.concatenate([_arc(0.27, 0.5, 0.24, 0.2, 0, 360), _arc(0.73, 0.5, 0.24, 0.2, 180, -180)])],  # infinity: an 8 lying down
    lambda: [_arc(0.5, 0.5, 0.48, 0.25, 0, 360), _arc(0.5, 0.5, 0.12, 0.12, 0, 360)],  # eye
    lambda: [_line((0.02, 0.2), (0.98, 0.2), (0.98, 0.8), (0.02, 0.8), (0.02, 0.2), (0.5, 0.55), (0.98, 0.2))],  # envelope
    lambda: [_line((0.02, 0.02), (0.98, 0.98)), _line((0.02, 0.98), (0.98, 0.02)), _line((0.5, 0.02), (0.5, 0.98))],  # asterisk
]

# The same marks by hand: "!" (its dot a short stroke), "¡", brackets and braces.
DRAWN_MARKS: list[Callable[[], list[np.ndarray]]] = [
    lambda: [_line((0.5, 0.02), (0.5, 0.7)), _line((0.5, 0.9), (0.5, 0.97))],  # !
    lambda: [_line((0.5, 0.03), (0.5, 0.1)), _line((0.5, 0.3), (0.5, 0.98))],  # ¡
    lambda: [_line((0.75, 0.02), (0.35, 0.02), (0.35, 0.98), (0.75, 0.98))],  # [
    lambda: [_line((0.25, 0.02), (0.65, 0.02), (0.65, 0.98), (0.25, 0.98))],  # ]
    lambda: [_line((0.7, 0.02), (0.5, 0.08), (0.5, 0.42), (0.3, 0.5), (0.5, 0.58), (0.5, 0.92), (0.7, 0.98))],  # {
    lambda: [_line((0.3, 0.02), (0.5, 0.08), (0.5, 0.42), (0.7, 0.5), (0.5, 0.58), (0.5, 0.92), (0.3, 0.98))],  # }
    lambda: [_line((0.5, 0.02), (0.5, 0.98)), _line((0.25, 0.3), (0.75, 0.3))],  # †
]
