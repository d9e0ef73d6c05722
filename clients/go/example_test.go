package ring_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"shardring.io/ring"
)

// A consumer that works only on the keys its member serves, following the ring agent's directory.
func Example() {
	r, err := ring.Load("../testdata/valid/small") // in a pod: the agent's --dir, e.g. /var/run/ring
	if err != nil {
		log.Fatal(err)
	}
	me, err := r.Find("m-1", "", 0) // or r.Find("", podIP, port)
	if err != nil {
		log.Fatal(err) // not in this version yet: serve nothing, wait for the next
	}
	for _, key := range []string{"orders-17", "orders-18", "orders-19", "orders-20"} {
		if r.IsMine(key, me) {
			fmt.Println(me, "handles", key, "in shard", r.Shard(key))
		}
	}
	// Output:
	// m-1 handles orders-17 in shard 5
	// m-1 handles orders-18 in shard 7
}

// Following new versions until the context ends.
func ExampleWatch() {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	w, err := ring.Watch(ctx, "../testdata/valid/small", 10*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("version", w.Current().Version)
	for r := range w.Changes() { // closed when ctx is done
		fmt.Println("new version", r.Version)
	}
	// Output:
	// version 3
}
