// The Go clients against Tributary, driven by compat-tests/test_go_clients.py:
//
//	go-clients <franz|sarama|kafkago> <bootstrap> <tag>
//
// Each client creates its topics, produces and reads back every record in a
// consumer group with its commits checked, and (franz-go and Sarama, which speak
// transactions) commits one transaction and aborts another that a read_committed
// reader must not see. Anything unexpected exits non-zero with the reason; the last
// line is "OK <client>".
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"
)

const records = 1000

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// value is the i-th record's value.
func value(i int) string { return fmt.Sprintf("v%05d", i) }

// expectAll checks that seen holds each of the n values exactly once.
func expectAll(seen map[string]int, n int, what string) {
	if len(seen) != n {
		fail("%s: %d distinct values, want %d", what, len(seen), n)
	}
	for i := 0; i < n; i++ {
		if c := seen[value(i)]; c != 1 {
			fail("%s: %s read %d times", what, value(i), c)
		}
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: go-clients <franz|sarama|kafkago> <bootstrap> <tag>")
	}
	client, bootstrap, tag := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	switch client {
	case "franz":
		franz(ctx, bootstrap, tag)
	case "sarama":
		saramaClient(ctx, bootstrap, tag)
	case "kafkago":
		kafkaGo(ctx, bootstrap, tag)
	default:
		fail("unknown client %q", client)
	}
	fmt.Println("OK", client)
}
