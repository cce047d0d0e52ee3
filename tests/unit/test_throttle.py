"""The SSH throttle's arithmetic: connections at once per source, and penalties that add up to a refusal."""

from tui.ssh.throttle import AUTHFAIL_PENALTY_SECONDS, MAX_STARTUPS_PER_SOURCE, PENALTY_MIN_SECONDS, Throttle


def test_unauthenticated_connections_are_capped_per_source_and_freed_as_they_log_in() -> None:
    throttle = Throttle()
    assert all(throttle.admit("10.0.0.1") for _ in range(MAX_STARTUPS_PER_SOURCE))
    assert not throttle.admit("10.0.0.1")
    assert throttle.admit("10.0.0.2")  # another source is not held back
    throttle.authenticated("10.0.0.1")
    assert throttle.admit("10.0.0.1")


def test_a_source_whose_failed_logins_add_up_is_refused_and_others_are_not() -> None:
    """Penalties run out as time passes, so the one that reaches the bound comes just after it adds up."""
    throttle, tries = Throttle(), 0
    while throttle.admit("10.0.0.1"):
        throttle.ended("10.0.0.1", tried=True)
        tries += 1
        assert tries <= PENALTY_MIN_SECONDS / AUTHFAIL_PENALTY_SECONDS + 1, "never refused"
    assert tries >= PENALTY_MIN_SECONDS / AUTHFAIL_PENALTY_SECONDS
    assert throttle.admit("10.0.0.2")
