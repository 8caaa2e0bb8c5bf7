"""Open and click tracking in an HTML email: every absolute http(s) link is pointed at a tracked redirect and a 1×1
pixel is added before `</body>` (or at the end). Pure string rewriting: the caller signs the URLs."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape, unescape

from domain.channels.tokens import safe_target

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def track_html(html: str, pixel_url: str, click_url: Callable[[str], str]) -> str:
    """`html` with its links tracked (`click_url(target)` gives the tracked URL) and the open pixel added.
    Links that are not absolute http(s) URLs (mailto:, anchors, relative) are left alone."""

    def rewrite(match: re.Match[str]) -> str:
        target = unescape(match[3]).strip()
        if not safe_target(target):
            return match[0]
        return f"{match[1]}{match[2]}{escape(click_url(target), quote=True)}{match[2]}"

    tracked = _HREF.sub(rewrite, html)
    pixel = f'<img src="{escape(pixel_url, quote=True)}" width="1" height="1" alt="" style="display:none">'
    found = list(_BODY_END.finditer(tracked))
    if found:
        at = found[-1].start()
        return tracked[:at] + pixel + tracked[at:]
    return tracked + pixel
