"""`ListingWatch`'s rules, without an engine: a listing is kept only if the event stream was open when it began
and nothing happened until it ended, and given again until something happens or `RELIST_SECONDS` pass."""

from hosting.paas.engine_events import RELIST_SECONDS, ListingWatch
from hosting.paas.runtime import Container

LISTING = [Container("n1", "c1", "acme", "web", 1, "i1", True, None, None, "127.0.0.1:20000")]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watched(clock: Clock) -> ListingWatch:
    watch = ListingWatch("n1", clock)
    watch.open = True  # as once its engine's stream answered
    return watch


def test_a_listing_begun_while_the_stream_is_open_is_given_again_until_relist_seconds_pass() -> None:
    clock = Clock()
    watch = watched(clock)
    watch.keep(watch.listing(), "p", LISTING)
    clock.now += RELIST_SECONDS - 0.1
    assert watch.kept("p") is LISTING
    assert watch.kept("another platform") is None
    clock.now += 0.1
    assert watch.kept("p") is None


def test_nothing_is_kept_while_the_stream_is_not_open() -> None:
    watch = ListingWatch("n1", Clock())
    watch.keep(watch.listing(), "p", LISTING)
    assert watch.kept("p") is None


def test_a_change_drops_the_listing_kept_and_one_under_way() -> None:
    watch = watched(Clock())
    watch.keep(watch.listing(), "p", LISTING)
    watch.changed()  # an event, or a container the runtime itself started
    assert watch.kept("p") is None

    mark = watch.listing()
    watch.changed()  # while the engine was being asked
    watch.keep(mark, "p", LISTING)
    assert watch.kept("p") is None
