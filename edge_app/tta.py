"""The test-time views our models run inside their graph: one table for convert, which bakes them in,
and teach, which scores a taught head on each view and averages them the same way."""

from __future__ import annotations

# mode -> weight of each view: flip = the image and its mirror; flip_shift (airbench's) = those two
# at 1/4 each, plus the pair shifted one pixel up-left and the pair shifted down-right at 1/8 each
VIEW_WEIGHTS: dict[str, tuple[float, ...]] = {
    "none": (1.0,),
    "flip": (0.5, 0.5),
    "flip_shift": (0.25, 0.25, 0.125, 0.125, 0.125, 0.125),
}


def view_weights(mode: str | None, views: int) -> tuple[float, ...]:
    """The weights of a model's `views` in-graph views: its recorded mode's, else equal ones."""
    weights = VIEW_WEIGHTS.get(mode or "none")
    if weights is not None and len(weights) == views:
        return weights
    return (1.0 / views,) * views
