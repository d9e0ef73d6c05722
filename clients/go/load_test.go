package ring

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLoadsAreServedAsTheAgentReadsThem(t *testing.T) {
	server := httptest.NewServer(LoadHandler(func() map[int]float64 {
		return map[int]float64{17: 1234, 3: 0.5}
	}))
	defer server.Close()
	reply, err := server.Client().Get(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer reply.Body.Close()
	data, err := io.ReadAll(reply.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(data)
	want := "shardring_shard_load{shard=\"3\"} 0.5\nshardring_shard_load{shard=\"17\"} 1234\n"
	if !strings.HasSuffix(body, want) {
		t.Fatalf("%q", body)
	}
	if err := WriteLoads(io.Discard, map[int]float64{1: -1}); err == nil {
		t.Fatal("a negative load was written")
	}
}
