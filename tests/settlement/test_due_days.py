"""Which days the daily reconciliation runs: a pure function of the last completed day and the
clocks, so a missed day runs at the next start and a clock that jumps (an NTP step on a board
without an RTC) neither skips nor doubles a day."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

from gridnode.settlement.reconciliation import day_window, due_days, latest_due_day

ZONE = ZoneInfo("Europe/Berlin")
AT = datetime.time(2, 30)
D = datetime.date


def t(day: str, hh_mm: str = "03:00") -> datetime.datetime:
    h, m = hh_mm.split(":")
    return datetime.datetime.combine(D.fromisoformat(day), datetime.time(int(h), int(m)),
                                     tzinfo=ZONE)


def simulate(clock: list[datetime.datetime], last: D | None = None, max_days: int = 7,
             chain: list[datetime.datetime] | None = None) -> list[D]:
    """The days run when the job wakes at each of `clock`'s times, each completed run recorded
    as the store records it."""
    ran: list[D] = []
    for i, now in enumerate(clock):
        due = due_days(last, now, AT, max_days, chain[i] if chain else None)
        for day in due.days:
            ran.append(day)
            last = day
    return ran


def test_the_previous_day_is_due_at_the_configured_time() -> None:
    assert latest_due_day(t("2026-12-07", "02:29"), AT) == D(2026, 12, 5)
    assert latest_due_day(t("2026-12-07", "02:30"), AT) == D(2026, 12, 6)
    assert due_days(D(2026, 12, 5), t("2026-12-07", "02:29"), AT, 7).days == []
    assert due_days(D(2026, 12, 5), t("2026-12-07", "02:30"), AT, 7).days == [D(2026, 12, 6)]
    assert due_days(D(2026, 12, 6), t("2026-12-07", "23:59"), AT, 7).days == []


def test_a_fresh_node_starts_with_the_latest_due_day() -> None:
    assert due_days(None, t("2026-12-07"), AT, 7).days == [D(2026, 12, 6)]


def test_days_missed_while_down_run_at_the_next_start_oldest_first() -> None:
    due = due_days(D(2026, 12, 1), t("2026-12-07", "01:00"), AT, 7)
    assert due.days == [D(2026, 12, 2), D(2026, 12, 3), D(2026, 12, 4), D(2026, 12, 5)]
    assert due.skipped == 0


def test_catch_up_is_bounded_and_says_what_it_skipped() -> None:
    due = due_days(D(2026, 11, 1), t("2026-12-07"), AT, 7)
    assert due.days == [D(2026, 11, 30) + datetime.timedelta(days=i) for i in range(7)]
    assert due.skipped == 28            # 11-02 .. 11-29
    assert due.skipped_first == D(2026, 11, 2)


def test_a_jump_forward_runs_every_day_in_between_once() -> None:
    clock = [t("2026-12-07", "02:30"), t("2026-12-07", "10:00"),
             t("2026-12-11", "05:00"),              # NTP steps four days ahead
             t("2026-12-11", "05:01"), t("2026-12-12", "02:30")]
    ran = simulate(clock, last=D(2026, 12, 5))
    assert ran == [D(2026, 12, d) for d in (6, 7, 8, 9, 10, 11)]


def test_a_jump_back_neither_reruns_nor_skips_a_day() -> None:
    clock = [t("2026-12-07", "02:30"),
             t("2026-12-06", "02:30"),               # the clock steps back a day
             t("2026-12-07", "02:30"),               # the same wall time comes again
             t("2026-12-07", "23:00"),
             t("2026-12-08", "02:30")]
    ran = simulate(clock, last=D(2026, 12, 5))
    assert ran == [D(2026, 12, 6), D(2026, 12, 7)]


def test_jumps_both_ways_around_the_run_time() -> None:
    # back across the run time and forward again past two run times, wobbling at each.
    clock = [t("2026-12-07", "02:31"), t("2026-12-07", "02:29"), t("2026-12-07", "02:31"),
             t("2026-12-09", "02:31"), t("2026-12-08", "02:31"), t("2026-12-09", "02:29"),
             t("2026-12-10", "02:30")]
    ran = simulate(clock, last=D(2026, 12, 5))
    assert ran == [D(2026, 12, d) for d in (6, 7, 8, 9)]
    assert len(ran) == len(set(ran))


def test_a_board_booting_in_1970_waits_for_its_clock() -> None:
    boot = datetime.datetime(1970, 1, 1, 0, 0, 10, tzinfo=datetime.UTC).astimezone(ZONE)
    # with a completed day: nothing is due in 1970; after the NTP step, the missed day.
    assert simulate([boot, t("2026-12-07")], last=D(2026, 12, 5)) == [D(2026, 12, 6)]
    # a fresh node asked with the chain's clock starts nothing in 1970, then the right day
    chain = [t("2026-12-07"), t("2026-12-07")]
    assert simulate([boot, t("2026-12-07")], chain=chain) == [D(2026, 12, 6)]


def test_a_local_clock_ahead_of_the_chain_waits_for_the_chain() -> None:
    ahead = t("2036-12-07")            # a wrong RTC, ten years ahead
    chain = t("2026-12-07", "03:00")
    assert due_days(D(2026, 12, 5), ahead, AT, 7, chain).days == [D(2026, 12, 6)]
    assert due_days(D(2026, 12, 6), ahead, AT, 7, chain).days == []
    # without the chain's clock the cap keeps it to a week of (wrong) days
    assert len(due_days(D(2026, 12, 6), ahead, AT, 7).days) == 7


def test_a_local_clock_behind_the_chain_catches_up_without_skipping() -> None:
    chain = [t("2026-12-10"), t("2026-12-10"), t("2026-12-10")]
    clock = [t("2026-12-05"), t("2026-12-08"), t("2026-12-10")]
    ran = simulate(clock, last=D(2026, 12, 1), max_days=3, chain=chain)
    # the slower clock decides the latest day; the bound of three days never drops one here
    assert ran == [D(2026, 12, d) for d in range(2, 10)]


def test_day_windows_follow_daylight_saving_time() -> None:
    start, end = day_window(D(2026, 3, 29), ZONE)     # clocks go forward: 23 hours
    assert end - start == 23 * 3600
    start, end = day_window(D(2026, 10, 25), ZONE)    # clocks go back: 25 hours
    assert end - start == 25 * 3600
    start, end = day_window(D(2026, 12, 7), ZONE)
    assert (end - start, start) == (86400, int(t("2026-12-07", "00:00").timestamp()))


def test_work_in_flight_widens_what_the_chain_may_hold() -> None:
    from gridnode.settlement.reconciliation import _Range

    r = _Range()
    r.add(1000, False)            # finalized: the chain must hold it
    r.add(300, True)              # in flight: it may have landed or not
    r.add(-200, True)             # an outgoing transfer in flight
    b = r.bounds()
    assert (b.low, b.high) == (800, 1300)
    assert b.holds(800) and b.holds(1300) and not b.holds(799) and not b.holds(1301)
    r.unknown_up()                # a mint in flight: its amount is known only once it lands
    assert r.bounds().holds(10**18) and not r.bounds().holds(799)
