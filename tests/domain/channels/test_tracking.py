"""Rewriting an HTML email for open and click tracking."""

from __future__ import annotations

from domain.channels.tracking import track_html


def tracked(target: str) -> str:
    return f"https://t.example/c?u={target}"


def test_http_links_are_tracked_and_the_pixel_goes_before_the_body_ends() -> None:
    html = ('<html><body><a href="https://shop.example/sale?a=1&amp;b=2">Sale</a> '
            "<a class='x' href='mailto:help@example.com'>Help</a> <a href=\"#top\">Top</a></body></html>")
    out = track_html(html, "https://t.example/o", tracked)
    assert 'href="https://t.example/c?u=https://shop.example/sale?a=1&amp;b=2"' in out
    assert "href='mailto:help@example.com'" in out and 'href="#top"' in out
    assert out.endswith('<img src="https://t.example/o" width="1" height="1" alt="" style="display:none">'
                        "</body></html>")


def test_a_fragment_without_a_body_gets_the_pixel_at_the_end() -> None:
    out = track_html("<p>Hi <A HREF=\"http://example.com\">x</A></p>", "https://t.example/o", tracked)
    assert 'HREF="https://t.example/c?u=http://example.com"' in out
    assert out.endswith('style="display:none">')
