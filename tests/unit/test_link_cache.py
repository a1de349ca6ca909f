"""The per-URL part of tracked links is remembered for a campaign's shared links only: links
to Mailpipe itself are personalized, never tracked, and never take a cache entry."""

from __future__ import annotations

from shared.domain import links as links_module
from shared.domain.links import Links, verify_click

BASE = {"tracking": "https://t.example.com", "unsubscribe": "https://u.example.com"}


def test_only_shared_third_party_links_are_remembered():
    links = Links("key", BASE)
    shared = ["https://news.example.com/a", "https://news.example.com/b"]
    for i in range(50):
        tracker = links.message_tracker(f"m{i}@x", f"s{i}", "c1", 1.7e9)
        assert tracker.click(f"https://u.example.com/?token=personal{i}") is None
        for url in shared:
            tracked = tracker.click(url)
            assert tracked is not None
            token = tracked.rsplit("/", 1)[1]
            assert verify_click("key", token)["u"] == url
    assert set(links._url_parts) == set(shared)


def test_a_signed_link_to_mailpipe_itself_verifies_and_is_not_remembered():
    links = Links("key", BASE)
    ours = "https://u.example.com/?token=personal"
    tracked = links.message_tracker("m@x", "s1", "c1", 1.7e9).sign_click(ours)
    assert verify_click("key", tracked.rsplit("/", 1)[1])["u"] == ours
    assert links._url_parts == {}


def test_personalized_third_party_links_cannot_grow_the_cache_past_its_limit():
    links = Links("key", BASE)
    tracker = links.message_tracker("m@x", "s1", "c1", 1.7e9)
    for i in range(links_module._URL_PART_CACHE_LIMIT * 2 + 5):
        tracker.click(f"https://shop.example.com/?ref={i}")
    assert len(links._url_parts) <= links_module._URL_PART_CACHE_LIMIT
