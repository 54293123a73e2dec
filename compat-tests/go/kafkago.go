package main

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// kafkaGo drives segmentio/kafka-go.
func kafkaGo(ctx context.Context, bootstrap, tag string) {
	topic, group := tag+"-data", tag+"-group"
	conn, err := kafka.DialContext(ctx, "tcp", bootstrap)
	check(err, "dial")
	controller, err := conn.Controller()
	check(err, "controller")
	conn.Close()
	cconn, err := kafka.DialContext(ctx, "tcp", net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port)))
	check(err, "dial the controller")
	check(cconn.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}), "create topic")
	partitions, err := cconn.ReadPartitions(topic)
	check(err, "read partitions")
	cconn.Close()
	if len(partitions) != 3 {
		fail("%d partitions, want 3", len(partitions))
	}

	w := &kafka.Writer{Addr: kafka.TCP(bootstrap), Topic: topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Hash{}, BatchTimeout: 10 * time.Millisecond, Compression: kafka.Snappy}
	var msgs []kafka.Message
	for i := 0; i < records; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(value(i % 37)), Value: []byte(value(i))})
	}
	check(w.WriteMessages(ctx, msgs...), "write")
	check(w.Close(), "close writer")

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, GroupID: group, Topic: topic,
		StartOffset: kafka.FirstOffset, MaxWait: 500 * time.Millisecond})
	seen := map[string]int{}
	for len(seen) < records {
		m, err := r.FetchMessage(ctx)
		check(err, "fetch")
		seen[string(m.Value)]++
		check(r.CommitMessages(ctx, m), "commit")
	}
	check(r.Close(), "close reader")
	expectAll(seen, records, "kafka-go group")

	client := &kafka.Client{Addr: kafka.TCP(bootstrap), Timeout: 10 * time.Second}
	fetched, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group,
		Topics: map[string][]int{topic: {0, 1, 2}}})
	check(err, "offset fetch")
	var committed int64
	for _, p := range fetched.Topics[topic] {
		check(p.Error, "committed offset")
		committed += p.CommittedOffset
	}
	if committed != records {
		fail("the group committed %d, want %d", committed, records)
	}
}
