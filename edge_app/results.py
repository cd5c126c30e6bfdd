"""A classified frame as JSON fields: the label and top-k that `run`'s JSON lines, the web API, the live
page and the history rows all show, written once so that the four cannot drift apart.

Each output adds its own keys around these (the frame's time and index, the row id, the feed's FPS);
see frame_json for the fields a result gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # live imports this module: the type only, no import cycle at run time
    from edgeclf.edge_app.live import FrameResult

UNCERTAIN = "uncertain"  # the label shown when the top score is below the threshold
SCORE_DIGITS = 4
MS_DIGITS = 3


def shown_label(result: FrameResult) -> str:
    """The top class, or 'uncertain' when its score is below the threshold."""
    return UNCERTAIN if result.uncertain else result.top[0][0]


def frame_json(
    result: FrameResult, *, uncertain: bool = False, preprocess_ms: bool = False, inference_ms: bool = False
) -> dict[str, Any]:
    """`label` and `top` ([{"label", "score"}], scores to 4 places) of a result, plus the flag and the
    timings (ms to 3 places) that are asked for, in the order label, uncertain, top, preprocess_ms,
    inference_ms (the order of `run`'s JSON lines, whose readers may depend on it)."""
    fields: dict[str, Any] = {"label": shown_label(result)}
    if uncertain:
        fields["uncertain"] = result.uncertain
    fields["top"] = [{"label": name, "score": round(p, SCORE_DIGITS)} for name, p in result.top]
    if preprocess_ms:
        fields["preprocess_ms"] = round(result.pre_ms, MS_DIGITS)
    if inference_ms:
        fields["inference_ms"] = round(result.infer_ms, MS_DIGITS)
    return fields
