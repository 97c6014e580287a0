"""Per-sender sequence tracking: no sender can make a link drop another sender's messages."""

import pytest

from rt_base.errors import ConfigError
from rt_wire.sender import Sender
from rt_wire.sequence import LinkSequences

REAL = Sender("source", "100-aaaaaaaaaaaa")
FORGER = Sender("source", "666-ffffffffffff")


def _states(link, sender, seqs):
    return [link.check(sender, s).state for s in seqs]


def test_a_forged_huge_sequence_number_does_not_silence_the_real_sender():
    """Issue 11: one message with a huge seq made every later message of the real upstream a
    'repeat' (dropped).  Under another id it now has a tracker of its own."""
    link = LinkSequences(frozenset({"source"}))
    assert _states(link, REAL, [0, 1, 2]) == ["ok"] * 3
    assert link.check(FORGER, 10**18).state == "ok"
    assert _states(link, REAL, [3, 4, 5]) == ["ok"] * 3  # none dropped, no gap either


def test_gaps_repeats_and_restarts_are_judged_per_sender():
    link = LinkSequences()
    other = Sender("other", "1-1")
    assert _states(link, REAL, [0, 1]) == ["ok", "ok"]
    assert _states(link, other, [0, 1, 2, 3]) == ["ok"] * 4
    gap = link.check(REAL, 4)
    assert (gap.state, gap.missing) == ("gap", 2)
    assert link.check(REAL, 3).state == "repeat"
    assert link.check(other, 4).state == "ok"
    assert link.check(REAL, 0).state == "restart"
    assert link.check(REAL, 1).state == "ok"


def test_a_restarted_upstream_is_expected_and_replaces_the_old_one():
    link = LinkSequences(frozenset({"source"}))
    assert _states(link, REAL, [0, 1, 2]) == ["ok"] * 3
    restarted = Sender("source", "101-bbbbbbbbbbbb")
    first = link.check(restarted, 0)
    assert (first.state, first.new, first.expected, first.replaces) == ("ok", True, True, REAL)
    assert (link.unknown, link.replaced) == (0, 1)


def test_senders_of_other_stage_names_are_unknown_but_not_dropped():
    link = LinkSequences(frozenset({"estimate"}))
    stranger = Sender("recorder", "5-5")
    first = link.check(stranger, 7)
    assert (first.state, first.new, first.expected) == ("ok", True, False)
    later = link.check(stranger, 8)
    assert (later.new, later.expected) == (False, False)
    assert link.unknown == 1


def test_without_known_upstream_the_first_id_of_each_stage_name_is_expected():
    link = LinkSequences()
    assert link.check(REAL, 0).expected
    assert link.check(Sender("decode", "1-1"), 0).expected
    second = link.check(FORGER, 0)
    assert not second.expected and second.replaces is None
    assert link.unknown == 1


def test_the_number_of_trackers_is_bounded_and_unknown_senders_go_first():
    link = LinkSequences(frozenset({"source"}), max_senders=4)
    assert _states(link, REAL, [0, 1]) == ["ok", "ok"]
    for i in range(100):
        link.check(Sender("forger", f"{i}"), 10**9)
    assert len(link.senders) == 4 and REAL in link.senders
    assert link.check(REAL, 2).state == "ok"  # still tracked: its next number is in order
    assert link.unknown == 100


def test_a_forgotten_sender_starts_afresh_and_is_never_dropped():
    link = LinkSequences(frozenset("abc"), max_senders=2)
    a, b, c = (Sender(n, "1") for n in "abc")
    assert _states(link, a, [0, 1, 2]) == ["ok"] * 3
    link.check(b, 0)
    link.check(c, 0)  # a (least recently heard) is forgotten
    assert a not in link.senders
    back = link.check(a, 1)  # would have been a repeat: after forgetting, accepted
    assert (back.state, back.new, back.expected) == ("ok", True, True)


def test_max_senders_must_be_positive():
    with pytest.raises(ConfigError, match="max_senders"):
        LinkSequences(max_senders=0)
