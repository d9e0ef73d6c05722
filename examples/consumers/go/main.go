// A queue consumer that consumes only the partitions its member serves, following the ring its
// agent writes.
//
//	queue-consumer -ring-dir /var/run/ring -address $POD_IP -port 9000 \
//	    -partitions partitions.txt -report /tmp/consuming.json -listen 127.0.0.1:8082
//
// Run it beside the ring agent with --reload-url http://127.0.0.1:8082/reload: the agent POSTs
// after every new version and acknowledges only once this consumer answered, having applied the
// ring. That is what makes a handover safe: a partition's previous owner keeps consuming it
// (IsMine says so while the ring lists it under handover) until the new owner has acknowledged.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"shardring.io/ring"
)

type consumer struct {
	ringDir, address string
	port             int
	partitions       []string
	report           string

	mu sync.Mutex
}

// apply takes the newest ring and consumes exactly the partitions this member serves in it.
func (c *consumer) apply() {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := ring.Load(c.ringDir)
	if err != nil {
		return // no ring yet, or a bad one: keep what we consume
	}
	consuming := []string{}
	var member *string
	if me, err := r.Find("", c.address, c.port); err == nil { // not listed: consume nothing
		member = &me
		for _, p := range c.partitions {
			if r.IsMine(p, me) {
				consuming = append(consuming, p)
			}
		}
	}
	data, _ := json.Marshal(map[string]any{"version": r.Version, "member": member,
		"keys": consuming})
	if err := os.WriteFile(c.report+".tmp", data, 0o644); err == nil {
		_ = os.Rename(c.report+".tmp", c.report) // a reader sees the old report or the new one
	}
}

func main() {
	c := &consumer{}
	var partitions, listen string
	var interval time.Duration
	flag.StringVar(&c.ringDir, "ring-dir", "", "the agent's directory (or a mounted ConfigMap)")
	flag.StringVar(&c.address, "address", "", "the address this member registered")
	flag.IntVar(&c.port, "port", 0, "the port it registered")
	flag.StringVar(&partitions, "partitions", "", "a file of partitions, one per line")
	flag.StringVar(&c.report, "report", "", "where to write the partitions consumed")
	flag.StringVar(&listen, "listen", "", "host:port for POST /reload")
	flag.DurationVar(&interval, "interval", time.Second, "time between checks")
	flag.Parse()
	data, err := os.ReadFile(partitions)
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" {
			c.partitions = append(c.partitions, line)
		}
	}
	http.HandleFunc("/reload", func(w http.ResponseWriter, _ *http.Request) {
		c.apply()
		w.WriteHeader(http.StatusOK)
	})
	go func() { log.Fatal(http.ListenAndServe(listen, nil)) }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for { // also without the agent's POST: a mounted ConfigMap changes too
		c.apply()
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
