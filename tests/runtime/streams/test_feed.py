"""The ordering of one group's changes for one subscriber (runtime/streams/feed.py), change by change."""

from __future__ import annotations

import functools

import orjson

from motia.runtime.streams.feed import Feed, FeedSubscription
from motia.state.backends.types import StreamChange
from motia.streams.protocol import ServerMessage, change_message, sync_message


class Sink:
    def __init__(self) -> None:
        self.sent: list[ServerMessage] = []
        self.lost_reasons: list[str] = []

    def send(self, message: ServerMessage) -> None:
        self.sent.append(message)

    def lost(self, stream: str, group: str, reason: str) -> None:
        self.lost_reasons.append(reason)

    def seqs(self) -> list[tuple[str, int | None]]:
        return [(message.event, message.seq) for message in self.sent]


def change(seq: int, item: str | None = "a", kind: str = "update") -> StreamChange:
    data = orjson.dumps({"id": item, "seq": seq})
    return StreamChange(seq + 100, "s", "g", item, seq, kind, data, data, 0.0)


def feed_change(feed: Feed, c: StreamChange) -> None:
    feed.on_change(c, functools.partial(change_message, c))


def sync(seq: int, item: str | None = None) -> ServerMessage:
    return sync_message("s", "g", item, seq, [] if item is None else None)


def test_a_first_join_drops_buffered_changes_its_snapshot_holds_and_sends_the_rest_in_order() -> None:
    # Given a join that registered its feed and is reading the snapshot
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    # When changes 4..7 arrive meanwhile and the snapshot was at seq 5
    for seq in (4, 5, 6, 7):
        feed_change(feed, change(seq))
    assert sink.sent == []
    assert feed.add_synced(FeedSubscription("x", None), 5, sync(5))
    feed.end_join()
    # Then the sync and exactly the changes after it go out, in order
    assert sink.seqs() == [("sync", 5), ("update", 6), ("update", 7)]
    feed_change(feed, change(7))  # a repeat is dropped
    feed_change(feed, change(8))
    assert sink.seqs()[-1] == ("update", 8) and len(sink.sent) == 4


def test_one_message_per_change_with_a_group_and_an_item_subscription() -> None:
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    feed.add_synced(FeedSubscription("group", None), 0, sync(0))
    feed.end_join()
    feed.begin_join()
    feed.add_synced(FeedSubscription("item", "a"), 0, sync(0, "a"))
    feed.end_join()
    feed_change(feed, change(1, "a", "create"))
    feed_change(feed, change(2, "b", "create"))
    assert sink.seqs() == [("sync", 0), ("sync", 0), ("create", 1), ("create", 2)]


def test_an_item_subscription_alone_gets_only_its_item_and_events_sent_to_it() -> None:
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    feed.add_synced(FeedSubscription("item", "a"), 0, sync(0, "a"))
    feed.end_join()
    feed_change(feed, change(1, "b", "create"))
    feed_change(feed, change(2, "a", "create"))
    feed_change(feed, change(3, None, "event"))  # sent to the group: not for an item subscription
    feed_change(feed, change(4, "a", "event"))
    assert sink.seqs() == [("sync", 0), ("create", 2), ("event", 4)]


def test_a_sync_read_ahead_of_the_tail_waits_for_the_changes_before_it() -> None:
    # Given a group subscription that has received up to seq 3
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    feed.add_synced(FeedSubscription("group", None), 3, sync(3))
    feed.end_join()
    # When an item subscription joins with a snapshot at seq 5 while the tail has delivered only up to 3
    feed.begin_join()
    assert feed.add_synced(FeedSubscription("item", "a"), 5, sync(5, "a"))
    feed.end_join()
    assert sink.seqs() == [("sync", 3)]
    # Then its sync goes out right after change 5, never before changes 4 and 5 (which it already holds)
    feed_change(feed, change(4))
    feed_change(feed, change(5))
    feed_change(feed, change(6))
    assert sink.seqs() == [("sync", 3), ("update", 4), ("update", 5), ("sync", 5), ("update", 6)]


def test_a_snapshot_older_than_the_cursor_is_refused_so_it_is_read_again() -> None:
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    feed.add_synced(FeedSubscription("group", None), 7, sync(7))
    feed.end_join()
    feed.begin_join()
    assert not feed.add_synced(FeedSubscription("item", "a"), 6, sync(6, "a"))
    feed.end_join()
    assert "item" not in feed.subs


def test_a_replay_on_a_new_feed_sends_the_history_then_continues() -> None:
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    feed_change(feed, change(4))  # arrived while reading the history: already in it
    feed_change(feed, change(5))
    assert feed.add_replayed(FeedSubscription("group", None), 2, [change(3), change(4)])
    feed.end_join()
    assert sink.seqs() == [("update", 3), ("update", 4), ("update", 5)]


def test_a_replay_behind_the_cursor_of_a_followed_group_needs_a_full_sync() -> None:
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    feed.add_synced(FeedSubscription("group", None), 5, sync(5))
    feed.end_join()
    assert not feed.add_replayed(FeedSubscription("item", "a"), 3, [change(4), change(5)])
    # ... but a replay from the cursor or later just follows on
    assert feed.add_replayed(FeedSubscription("item2", "b"), 5, [])
    assert "item2" in feed.subs


def test_a_gap_in_the_tail_drops_the_subscriber_so_it_resumes() -> None:
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    feed.add_synced(FeedSubscription("group", None), 1, sync(1))
    feed.end_join()
    feed_change(feed, change(4))
    assert sink.lost_reasons == ["changes 2 to 3 of the group were missed"]


def test_leaving_drops_a_waiting_sync_and_an_empty_feed_is_idle() -> None:
    sink = Sink()
    feed = Feed(sink, "s", "g")
    feed.begin_join()
    feed.add_synced(FeedSubscription("group", None), 1, sync(1))
    feed.end_join()
    feed.add_synced(FeedSubscription("item", "a"), 3, sync(3, "a"))
    assert feed.remove("item") and not feed.remove("item")
    feed_change(feed, change(2))
    feed_change(feed, change(3))
    assert sink.seqs() == [("sync", 1), ("update", 2), ("update", 3)]
    assert not feed.idle
    feed.remove("group")
    assert feed.idle


def test_a_join_buffering_too_much_drops_the_subscriber() -> None:
    sink = Sink()
    feed = Feed(sink, "s", "g", buffer_limit=3)
    feed.begin_join()
    for seq in range(1, 6):
        feed_change(feed, change(seq))
    assert sink.lost_reasons == ["too many changes arrived while joining"]
