"""The consistency workload (consistency.py) run short: idempotent and transactional
producers and a read_committed group against a broker SIGKILLed, paused and
restarted; no acknowledged record lost, none duplicated or reordered, no aborted
record read, no torn transaction, no committed offset or high watermark back.
Run it long with `python3 compat-tests/consistency.py --seconds 600`."""

from consistency import check, run


def test_no_anomalies_under_kills_pauses_and_restarts(make_broker):
    broker = make_broker("jepsen", config_text="[groups]\ninitial_rebalance_delay_ms = 0\n")
    broker.start()
    history = run(broker, seconds=30, seed=7)
    anomalies, stats = check(broker, history)
    assert anomalies == {}, {k: v[:5] for k, v in anomalies.items()}
    assert stats["acked"] > 1000, stats
    assert stats["transactions"]["committed"] > 3 and stats["transactions"]["aborted"] > 0, stats
    assert sum(stats["faults"].values()) >= 4, stats
    assert stats["consumed"] > 100, stats
    assert broker.stop() == 0
