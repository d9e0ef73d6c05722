package ring

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
)

// LoadMetric is the gauge the ring agent reads (--load-url) to report what each shard carries,
// for balancing by load (balance.by: load).
const LoadMetric = "shardring_shard_load"

// WriteLoads writes per-shard loads in Prometheus' text format, by shard number. Any unit works
// (series, requests per second, bytes) as long as every member of the ring uses the same one.
func WriteLoads(w io.Writer, loads map[int]float64) error {
	shards := make([]int, 0, len(loads))
	for shard, load := range loads {
		if shard < 0 || load < 0 || math.IsNaN(load) || math.IsInf(load, 0) {
			return fmt.Errorf("shard %d: a load is a finite number >= 0, not %v", shard, load)
		}
		shards = append(shards, shard)
	}
	sort.Ints(shards)
	if _, err := fmt.Fprintf(w, "# HELP %s What this shard costs the member serving it (any unit, the same for every member).\n# TYPE %s gauge\n", LoadMetric, LoadMetric); err != nil {
		return err
	}
	for _, shard := range shards {
		if _, err := fmt.Fprintf(w, "%s{shard=\"%d\"} %s\n", LoadMetric, shard,
			strconv.FormatFloat(loads[shard], 'g', -1, 64)); err != nil {
			return err
		}
	}
	return nil
}

// LoadHandler serves the loads measure returns, for the agent's --load-url.
func LoadHandler(measure func() map[int]float64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if err := WriteLoads(w, measure()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}
