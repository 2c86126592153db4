"""Exactly-once, durable transition delivery: the ledger, the learner's log, the actor's spool."""

import os
import random

import pytest

from hilserl_core.rl.delivery import DeliveryLedger, LearnerInbox, TransitionLog, TransitionLogError, TransitionSpool


def test_ledger_watermark_is_contiguous_and_duplicates_are_refused():
    ledger = DeliveryLedger()
    for seq in (0, 1, 3, 4):
        assert ledger.add("actor", "s1", seq)
    assert ledger.watermarks() == [{"actor": "actor", "session": "s1", "through": 1}]
    assert ledger.missing() == 1
    assert not ledger.add("actor", "s1", 3) and not ledger.add("actor", "s1", 0)
    assert ledger.duplicates == 2
    assert ledger.add("actor", "s1", 2)  # the resend fills the gap
    assert ledger.watermarks()[0]["through"] == 4 and ledger.missing() == 0
    assert ledger.add("actor", "s2", 0)  # a restarted actor is a new stream
    assert ledger.has("actor", "s1", 4) and not ledger.has("actor", "s2", 1)


def test_ledger_round_trips_through_json():
    ledger = DeliveryLedger()
    for seq in (0, 1, 2, 5, 7):
        ledger.add("a", "x", seq)
    back = DeliveryLedger.from_json(ledger.to_json())
    assert back.to_json() == ledger.to_json()
    assert not back.add("a", "x", 5) and back.add("a", "x", 3)


def test_ledger_random_order_with_resends_ends_with_everything_once():
    rng = random.Random(0)
    sent = list(range(500))
    arrivals = sent + rng.sample(sent, 200)  # every one at least once, some twice
    rng.shuffle(arrivals)
    ledger, stored = DeliveryLedger(), []
    for seq in arrivals:
        if ledger.add("a", "s", seq):
            stored.append(seq)
    assert sorted(stored) == sent
    assert ledger.duplicates == 200 and ledger.watermarks()[0]["through"] == 499


def _payload(i: int) -> bytes:
    return bytes([i % 251]) * (100 + i)


def test_log_appends_reads_back_and_reopens_where_it_stopped(tmp_path):
    log = TransitionLog(tmp_path, segment_records=4)
    for i in range(10):
        assert log.append(_payload(i), "a", "s", i) == i
    log.close()
    assert len(list(tmp_path.glob("segment_*.log"))) == 3
    log = TransitionLog(tmp_path, segment_records=4)
    assert log.next_index == 10 and log.repaired is None
    assert log.append(_payload(10), "a", "s", 10) == 10
    recs = list(log.records(3))
    assert [r.index for r in recs] == list(range(3, 11))
    assert all(r.payload == _payload(r.index) and r.seq == r.index and r.actor_id == "a" for r in recs)
    log.close()


def test_a_torn_last_record_is_cut_off_and_the_log_goes_on(tmp_path):
    log = TransitionLog(tmp_path, segment_records=100)
    for i in range(5):
        log.append(_payload(i), "a", "s", i)
    log.close()
    seg = next(tmp_path.glob("segment_*.log"))
    size = seg.stat().st_size
    with open(seg, "r+b") as f:  # a crash halfway through the fifth record
        f.truncate(size - 50)
    log = TransitionLog(tmp_path, segment_records=100)
    assert log.next_index == 4
    assert "record 4" in log.repaired and str(seg) in log.repaired
    log.append(_payload(99), "a", "s", 4)
    assert [r.payload for r in log.records()] == [_payload(i) for i in range(4)] + [_payload(99)]
    log.close()


def test_a_damaged_record_before_the_tail_is_an_error_naming_the_file(tmp_path):
    log = TransitionLog(tmp_path, segment_records=3)
    for i in range(7):
        log.append(_payload(i), "a", "s", i)
    log.close()
    first = sorted(tmp_path.glob("segment_*.log"))[0]
    data = bytearray(first.read_bytes())
    data[40] ^= 0xFF  # inside the first record's payload
    first.write_bytes(bytes(data))
    log = TransitionLog(tmp_path, segment_records=3)
    with pytest.raises(TransitionLogError, match=first.name):
        list(log.records())
    log.close()


def test_prune_keeps_every_record_at_or_above_the_mark(tmp_path):
    log = TransitionLog(tmp_path, segment_records=4)
    for i in range(14):
        log.append(_payload(i), "a", "s", i)
    assert log.prune(9) == 2  # segments 0-3 and 4-7; 8-11 holds 9
    assert log.first_index == 8
    assert [r.index for r in log.records(9)] == list(range(9, 14))
    assert log.prune(100) == 1  # 8-11; the segment being written stays
    log.close()


def test_sync_makes_records_durable_for_a_reader_in_another_process(tmp_path):
    log = TransitionLog(tmp_path)
    log.append(b"x" * 10, "a", "s", 0)
    assert log.sync() and not log.sync()
    pid = os.fork()
    if pid == 0:  # the record is on disk: a second reader (a restarted learner) sees it
        other = TransitionLog(tmp_path)
        os._exit(0 if other.next_index == 1 else 1)
    assert os.waitpid(pid, 0)[1] == 0
    log.close()


def test_spool_resends_what_was_not_acknowledged_in_order_and_bounds_itself():
    spool = TransitionSpool(max_transitions=5, resend_after_s=2.0)
    for seq in range(5):
        spool.sent(seq, f"m{seq}", now_s=float(seq) * 0.1)
    assert spool.full and spool.due(1.0, limit=10) == []
    assert spool.acknowledge(1) == 2 and not spool.full
    assert spool.due(2.45, limit=2) == [(2, "m2"), (3, "m3")]  # oldest first, at most the limit
    assert spool.due(2.45, limit=10) == [(4, "m4")]  # 2 and 3 were just resent
    assert spool.resent == 3
    assert spool.oldest_age_s(3.0) == pytest.approx(2.8)  # m2, first sent at 0.2: resending does not reset it
    spool.acknowledge(4)
    assert len(spool) == 0 and spool.acknowledged_through == 4


def test_inbox_after_a_crash_replays_exactly_what_the_checkpoint_lacks(tmp_path):
    inbox = LearnerInbox(tmp_path, segment_records=4)
    for seq in range(10):
        assert not inbox.is_duplicate("a", "s", seq)
        index = inbox.receive(_payload(seq), "a", "s", seq)
        if seq < 6:
            inbox.applied(index, "a", "s", seq)  # the training thread got this far
    state = inbox.checkpoint_state()  # a checkpoint of the buffers holding 0..5
    inbox.sync()
    assert inbox.acknowledgement("L")["streams"] == [{"actor": "a", "session": "s", "through": 9}]
    # SIGKILL: nothing closed. A new learner restores the checkpoint and replays the log
    again = LearnerInbox(tmp_path, segment_records=4)
    again.restore(state)
    replayed = list(again.replay())
    assert [r.seq for r in replayed] == [6, 7, 8, 9] and [r.payload for r in replayed] == [_payload(s) for s in range(6, 10)]
    for r in replayed:
        again.applied(r.index, r.actor_id, r.session, r.seq)
    assert all(again.is_duplicate("a", "s", seq) for seq in range(10))  # resends of any of them are refused
    assert again.receive(_payload(10), "a", "s", 10) == 10  # the log goes on after its last record
    assert again.stored.watermarks() == [{"actor": "a", "session": "s", "through": 9}]
    again.close()


def test_inbox_without_a_checkpoint_replays_the_whole_log(tmp_path):
    inbox = LearnerInbox(tmp_path)
    for seq in range(3):
        inbox.receive(_payload(seq), "a", "s", seq)
    inbox.sync()
    again = LearnerInbox(tmp_path)
    again.restore(None)
    assert [r.seq for r in again.replay()] == [0, 1, 2]
