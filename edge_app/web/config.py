"""What the web app is built from: its limits (WebConfig) and the objects every piece of it reads
(WebContext: the shared classifier, the history store, the limits and the optional live feed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeclf.edge_app.web.uploads import MAX_PIXELS

if TYPE_CHECKING:  # the pieces take anything with these interfaces (the tests pass fakes)
    from edgeclf.edge_app.web.deploy import Deployer
    from edgeclf.edge_app.web.feed import LiveFeed, SharedClassifier
    from edgeclf.edge_app.web.store import History
    from edgeclf.edge_app.web.teaching import Teaching


@dataclass(frozen=True)
class WebConfig:
    """The app's limits and access rules."""

    token: str | None = None
    max_upload: int = 10 * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    per_page: int = 20
    allowed_hosts: frozenset[str] | None = None  # None: any Host header (a token guards non-loopback binds)
    max_viewers: int = 2  # MJPEG streams at once: each holds a request thread for as long as it is watched
    # told of each classified upload: label, top score, top-k, the model that answered (serve --mqtt's event)
    on_upload: Callable[[str, float, list[dict[str, Any]], str], None] | None = None
    review_dir: Path | None = None  # the frames `run --collect DIR` saved, for the Review page (None: history only)


@dataclass(frozen=True)
class WebContext:
    """The shared state the routes of every piece use; `feed` is None without a camera source. `deploy`
    changes the model in force and `teach` holds the teach folder (create_app makes both when not given)."""

    shared: SharedClassifier
    history: History
    config: WebConfig
    feed: LiveFeed | None = None
    deploy: Deployer = None  # type: ignore[assignment]
    teach: Teaching = None  # type: ignore[assignment]

    @property
    def model_name(self) -> str:
        """The model's file name, shown on the pages and in the API (never its folder)."""
        return self.shared.clf.path.name
