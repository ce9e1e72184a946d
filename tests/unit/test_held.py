"""What a job holds for the daemon (pure logic): sequence numbers, confirmation, bounds, resend."""

from __future__ import annotations

import threading

from pioreactor.held import Held
from pioreactord.protocol import decode


def log(i: int) -> dict:
    return {"t": "log", "level": "INFO", "message": f"line {i}", "task": "j"}


def take_all(held: Held) -> list[dict]:
    out = []
    while (frames := held.peek()) is not None:
        header = decode(frames)[0]
        out.extend(header["records"] if header["t"] == "logs" else [header])  # a group of lines
        held.sent()
    return out


def test_log_lines_are_numbered_and_held_until_confirmed() -> None:
    held = Held()
    held.add(log(1), None)
    held.add({"t": "state", "state": "ready"}, None)
    held.add({"t": "setting", "name": "x", "value": "1"}, None)  # a current value: not held
    held.add(log(2), None)
    sent = take_all(held)
    assert [m.get("seq") for m in sent] == [1, None, None, 2] and held.sent_upto == 2
    assert held.unconfirmed() == 2
    held.confirmed(1)
    assert held.unconfirmed() == 1
    held.confirmed(2)
    assert held.unconfirmed() == 0


def test_once_the_daemon_confirms_a_full_hold_drops_new_lines_and_says_so_later() -> None:
    held = Held(max_lines=10, room_wait=0)  # no ack comes in time
    held.confirmed(0)  # this daemon confirms
    for i in range(15):
        held.add(log(i), None)
    assert [m["seq"] for m in take_all(held)] == list(range(1, 11)) and held.dropped == 5
    assert held.drop_report() == 0  # still full
    held.confirmed(8)
    assert held.drop_report() == 5 and held.drop_report() == 0


def test_a_line_past_the_bound_waits_for_a_live_daemon_s_ack_instead_of_being_dropped() -> None:
    held = Held(max_lines=10, room_wait=10)
    held.confirmed(0)
    for i in range(10):
        held.add(log(i), None)
    take_all(held)
    added: list[bool] = []
    logger = threading.Thread(target=lambda: added.append(held.add(log(10), None)))
    logger.start()
    logger.join(0.3)  # a window in which a dropping rule would have returned at once
    assert logger.is_alive() and not added  # it waits: the hold is full and the daemon alive
    held.confirmed(5)
    logger.join(5)
    assert added == [True] and held.dropped == 0 and held.unconfirmed() == 6


def test_before_any_confirmation_the_oldest_sent_make_room() -> None:
    held = Held(max_lines=3)
    for i in range(3):
        held.add(log(i), None)
    take_all(held)
    held.add(log(3), None)
    assert held.unconfirmed() == 3 and held.dropped == 0


def test_the_waiting_queue_is_bounded_for_every_kind() -> None:
    held = Held(max_waiting=5)
    for _ in range(8):
        held.add({"t": "publish", "topic": "a", "qos": 0, "retain": False}, b"x")
    assert held.waiting() == 5 and held.dropped == 3


def test_resend_puts_what_went_out_back_in_front_behind_a_marker() -> None:
    held = Held()
    for i in range(1, 6):
        held.add(log(i), None)
    take_all(held)
    held.confirmed(2)
    held.add(log(6), None)  # waiting, not sent yet
    assert held.resend(1) == 3
    again = take_all(held)
    assert again[0] == {"v": 1, "t": "resending", "from": 3}
    assert [m["seq"] for m in again[1:]] == [3, 4, 5, 6] and held.sent_upto == 6


def test_without_confirmations_the_drop_is_said_once_the_sent_catch_up() -> None:
    held = Held(max_lines=4)
    for i in range(6):
        held.add(log(i), None)
    assert held.dropped == 2 and held.drop_report() == 0
    take_all(held)
    assert held.drop_report() == 2
