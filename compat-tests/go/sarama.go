package main

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	return cfg
}

// groupReader is a sarama ConsumerGroupHandler counting values and marking each.
type groupReader struct {
	mu   sync.Mutex
	seen map[string]int
	want int
	done chan struct{}
	once sync.Once
}

func (g *groupReader) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (g *groupReader) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (g *groupReader) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		g.mu.Lock()
		g.seen[string(msg.Value)]++
		n := len(g.seen)
		g.mu.Unlock()
		sess.MarkMessage(msg, "")
		if n >= g.want {
			sess.Commit()
			g.once.Do(func() { close(g.done) })
		}
	}
	return nil
}

// saramaClient drives IBM/sarama.
func saramaClient(ctx context.Context, bootstrap, tag string) {
	topic, txTopic, group := tag+"-data", tag+"-tx", tag+"-group"
	brokers := []string{bootstrap}
	cfg := saramaConfig()
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	check(err, "cluster admin")
	defer admin.Close()
	for _, t := range []string{topic, txTopic} {
		check(admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false), "create "+t)
	}
	topics, err := admin.ListTopics()
	check(err, "list topics")
	if d, ok := topics[topic]; !ok || d.NumPartitions != 3 {
		fail("list topics: %v", topics[topic])
	}

	producer, err := sarama.NewSyncProducer(brokers, cfg)
	check(err, "producer")
	var msgs []*sarama.ProducerMessage
	for i := 0; i < records; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(value(i % 37)),
			Value: sarama.StringEncoder(value(i))})
	}
	check(producer.SendMessages(msgs), "send")
	check(producer.Close(), "close producer")

	gcfg := saramaConfig()
	gcfg.Consumer.Offsets.AutoCommit.Enable = false
	cg, err := sarama.NewConsumerGroup(brokers, group, gcfg)
	check(err, "consumer group")
	reader := &groupReader{seen: map[string]int{}, want: records, done: make(chan struct{})}
	gctx, gcancel := context.WithCancel(ctx)
	go func() {
		for gctx.Err() == nil {
			if err := cg.Consume(gctx, []string{topic}, reader); err != nil && gctx.Err() == nil {
				fail("consume: %v", err)
			}
		}
	}()
	select {
	case <-reader.done:
	case <-ctx.Done():
		fail("the group read %d of %d records", len(reader.seen), records)
	}
	gcancel()
	check(cg.Close(), "close group")
	reader.mu.Lock()
	expectAll(reader.seen, records, "sarama group")
	reader.mu.Unlock()
	offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
	check(err, "group offsets")
	var committed int64
	for _, b := range offsets.Blocks[topic] {
		committed += b.Offset
	}
	if committed != records {
		fail("the group committed %d, want %d", committed, records)
	}

	// Transactions: one committed, one aborted.
	tcfg := saramaConfig()
	tcfg.Producer.Transaction.ID = tag + "-txid"
	tcfg.Producer.Partitioner = sarama.NewManualPartitioner
	tp, err := sarama.NewSyncProducer(brokers, tcfg)
	check(err, "transactional producer")
	for i, outcome := range []string{"committed", "aborted"} {
		check(tp.BeginTxn(), "begin")
		for j := 0; j < 10; j++ {
			_, _, err := tp.SendMessage(&sarama.ProducerMessage{Topic: txTopic, Partition: 0,
				Value: sarama.StringEncoder(outcome + value(j))})
			check(err, "send in a transaction")
		}
		if i == 0 {
			check(tp.CommitTxn(), "commit")
		} else {
			check(tp.AbortTxn(), "abort")
		}
	}
	check(tp.Close(), "close transactional producer")
	rcfg := saramaConfig()
	rcfg.Consumer.IsolationLevel = sarama.ReadCommitted
	consumer, err := sarama.NewConsumer(brokers, rcfg)
	check(err, "consumer")
	pc, err := consumer.ConsumePartition(txTopic, 0, sarama.OffsetOldest)
	check(err, "consume partition")
	got := map[string]bool{}
	quiet := time.After(3 * time.Second)
loop:
	for {
		select {
		case m := <-pc.Messages():
			got[string(m.Value)] = true
		case <-quiet:
			if len(got) >= 10 {
				break loop
			}
			quiet = time.After(time.Second)
		case <-ctx.Done():
			break loop
		}
	}
	pc.Close()
	consumer.Close()
	if len(got) != 10 {
		fail("read_committed saw %v, want the 10 committed records", sorted(got))
	}
	for v := range got {
		if !strings.HasPrefix(v, "committed") {
			fail("read_committed saw %s", v)
		}
	}
}
