package main

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// franz drives franz-go (kgo and kadm).
func franz(ctx context.Context, bootstrap, tag string) {
	topic, txTopic, group := tag+"-data", tag+"-tx", tag+"-group"
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	check(err, "client")
	defer cl.Close()
	adm := kadm.NewClient(cl)

	created, err := adm.CreateTopics(ctx, 3, 1, nil, topic, txTopic)
	check(err, "create topics")
	for _, r := range created {
		check(r.Err, "create "+r.Topic)
	}
	// Configs: altered and described back.
	alter := []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("86400000")}}
	altered, err := adm.AlterTopicConfigs(ctx, alter, topic)
	check(err, "alter configs")
	for _, r := range altered {
		check(r.Err, "alter "+r.Name)
	}
	described, err := adm.DescribeTopicConfigs(ctx, topic)
	check(err, "describe configs")
	rc, err := described.On(topic, nil)
	check(err, "described topic")
	found := false
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" && c.MaybeValue() == "86400000" {
			found = true
		}
	}
	if !found {
		fail("retention.ms not described as altered")
	}

	// Produce (idempotent by default), keyed so partitions spread.
	var recs []*kgo.Record
	for i := 0; i < records; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(value(i % 37)), Value: []byte(value(i))})
	}
	check(cl.ProduceSync(ctx, recs...).FirstErr(), "produce")
	ends, err := adm.ListEndOffsets(ctx, topic)
	check(err, "list end offsets")
	var total int64
	ends.Each(func(o kadm.ListedOffset) { check(o.Err, "end offset"); total += o.Offset })
	if total != records {
		fail("end offsets sum to %d, want %d", total, records)
	}

	// A consumer group committing by hand.
	cons, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	check(err, "consumer")
	seen := map[string]int{}
	for len(seen) < records && ctx.Err() == nil {
		fetches := cons.PollFetches(ctx)
		fetches.EachError(func(t string, p int32, err error) { fail("fetch %s/%d: %v", t, p, err) })
		fetches.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
		check(cons.CommitUncommittedOffsets(ctx), "commit")
	}
	cons.Close()
	expectAll(seen, records, "franz-go group")
	lags, err := adm.Lag(ctx, group)
	check(err, "lag")
	if l := lags[group]; l.Error() != nil || l.Lag.Total() != 0 {
		fail("group lag %d (%v), want 0", l.Lag.Total(), l.Error())
	}

	// Transactions: one committed, one aborted.
	tx, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.TransactionalID(tag+"-txid"),
		kgo.DefaultProduceTopic(txTopic))
	check(err, "transactional client")
	for i, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
		check(tx.BeginTransaction(), "begin")
		var batch []*kgo.Record
		for j := 0; j < 10; j++ {
			outcome := "committed"
			if i == 1 {
				outcome = "aborted"
			}
			batch = append(batch, &kgo.Record{Value: []byte(outcome + value(j))})
		}
		check(tx.ProduceSync(ctx, batch...).FirstErr(), "produce in a transaction")
		check(tx.EndTransaction(ctx, commit), "end transaction")
	}
	tx.Close()
	rcl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumeTopics(txTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	check(err, "read_committed client")
	got := map[string]bool{}
	quiet := time.Now().Add(2 * time.Second)
	for ctx.Err() == nil && (len(got) < 10 || time.Now().Before(quiet)) {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := rcl.PollFetches(pctx)
		pcancel()
		fetches.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	rcl.Close()
	if len(got) != 10 {
		fail("read_committed saw %v, want the 10 committed records", sorted(got))
	}
	for v := range got {
		if v[:9] != "committed" {
			fail("read_committed saw %s", v)
		}
	}
}
