"""Seeded, procedural images that teach what is and is not a digit. No TensorFlow, no downloads.

Each maker draws one image from a numpy Generator, as a person's image would arrive: white ink
on black, any size, before `imaging.to_mnist`. Digits and non-digits come from the same
renderers (typed in a font, drawn with a round pen, photographed), so that how an image was made
never tells the two apart; only what it shows does.

    digits:      MNIST digits with thicker or thinner strokes, typed digits, typed digits sketched
                 by hand (skeleton, warped, redrawn), pen-drawn digits, low-resolution digits (any
                 of those brought down to 6-12 pixels and scaled back up, as a coarse scan is)
    non-digits:  typed and sketched letters (Latin, Cyrillic, Greek, Armenian, Georgian, Hebrew) and
                 symbols, pen-drawn letters and doodles, thin upright marks and brackets (! [ ] { }
                 †, typed or drawn), scribbles, textures (what a crop of a photo holds), two MNIST
                 digits written over each other;
                 some of each at low resolution too, so that resolution never tells the two apart

Where each part lives:

    glyphs.py   what is drawn: the characters to type (DIGITS, NOT_DIGITS), the fonts, the pen
                strokes of digits and of non-digits (DRAWN_DIGITS, DRAWN_SHAPES)
    render.py   how: the pen, and drawn, typed, sketched, low_resolution, restroked, photographed,
                scribble, texture, digit_overlay
    kinds.py    the kinds, each with its maker and share of a set (DIGIT_KINDS, NON_DIGIT_KINDS,
                POOL_KINDS), and KINDS, whose indices are the `kind` codes in a saved set
    sets.py     a set as the model sees it: as_seen, clearly_labelled, make_set, shares
"""

from .glyphs import DIGITS, DRAWN_DIGITS, DRAWN_MARKS, DRAWN_SHAPES, FONTS, NOT_DIGITS, TEXT_FONTS, UPRIGHT_MARKS
from .kinds import DIGIT_KINDS, KINDS, LOW_RESOLUTION_NON_DIGITS, NON_DIGIT_KINDS, POOL_KINDS
from .render import CANVAS, digit_overlay, drawn, low_resolution, photographed, restroked, scribble, sketched, texture, typed
from .sets import CHUNK, as_seen, clearly_labelled, make_set, shares

__all__ = [
    "CANVAS",
    "CHUNK",
    "DIGITS",
    "DIGIT_KINDS",
    "DRAWN_DIGITS",
    "DRAWN_MARKS",
    "DRAWN_SHAPES",
    "FONTS",
    "KINDS",
    "LOW_RESOLUTION_NON_DIGITS",
    "NON_DIGIT_KINDS",
    "NOT_DIGITS",
    "POOL_KINDS",
    "TEXT_FONTS",
    "UPRIGHT_MARKS",
    "as_seen",
    "clearly_labelled",
    "digit_overlay",
    "drawn",
    "low_resolution",
    "make_set",
    "photographed",
    "restroked",
    "scribble",
    "shares",
    "sketched",
    "texture",
    "typed",
]
