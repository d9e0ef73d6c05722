package ring

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// volume writes versions as kubelet's AtomicWriter does: a new ..<stamp> directory, the ..data
// link renamed over the old one, the old directory deleted at once.
type volume struct {
	root  string
	count int
}

func (v *volume) write(t *testing.T, text string) {
	t.Helper()
	v.count++
	stamp := fmt.Sprintf("..2026_12_02_00_00_00.%09d", v.count)
	must(t, os.Mkdir(filepath.Join(v.root, stamp), 0o755))
	must(t, os.WriteFile(filepath.Join(v.root, stamp, "ring.json"), []byte(text), 0o644))
	old, _ := os.Readlink(filepath.Join(v.root, "..data"))
	must(t, os.Symlink(stamp, filepath.Join(v.root, "..data_tmp")))
	must(t, os.Rename(filepath.Join(v.root, "..data_tmp"), filepath.Join(v.root, "..data")))
	if _, err := os.Lstat(filepath.Join(v.root, "ring.json")); err != nil {
		must(t, os.Symlink("..data/ring.json", filepath.Join(v.root, "ring.json")))
	}
	if old != "" {
		must(t, os.RemoveAll(filepath.Join(v.root, old)))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func vector(t *testing.T, name string) string {
	data, err := os.ReadFile(filepath.Join(testdata, "valid", name, "ring.json"))
	must(t, err)
	return string(data)
}

func versioned(text string, version int) string {
	return strings.Replace(text, `"ringVersion":3,`, fmt.Sprintf(`"ringVersion":%d,`, version), 1)
}

// A watcher sends each new version, never a half-swapped one, and closes when its context ends.
func TestWatcherFollowsSwapsUnderARaceDetector(t *testing.T) {
	v := &volume{root: t.TempDir()}
	small := vector(t, "small")
	v.write(t, versioned(small, 1))
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Watch(ctx, v.root, time.Millisecond)
	must(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for version := 2; version <= 300; version++ {
			v.write(t, versioned(small, version))
		}
	}()
	last := int64(1)
	reads := 0
	for running := true; running; {
		select {
		case r := <-w.Changes():
			if r.Version <= last {
				t.Fatalf("version %d after %d", r.Version, last)
			}
			last = r.Version
		case <-done:
			running = false
		default:
			if _, err := Load(v.root); err != nil { // a reader beside the watcher, mid-swap
				t.Fatalf("read during a swap: %v", err)
			}
			if w.Err() != nil {
				t.Fatalf("watcher: %v", w.Err())
			}
			reads++
		}
	}
	deadline := time.After(5 * time.Second)
	for w.Current().Version != 300 {
		select {
		case <-w.Changes():
		case <-deadline:
			t.Fatalf("current %d", w.Current().Version)
		}
	}
	cancel()
	for range w.Changes() { // closed once the context is done
	}
	if reads == 0 {
		t.Fatal("no read happened during the swaps")
	}
}

// A version that is not a valid ring is not taken: the last valid one stays, and Err says why.
func TestABadVersionKeepsTheLastGoodRing(t *testing.T) {
	v := &volume{root: t.TempDir()}
	small := vector(t, "small")
	v.write(t, small)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := Watch(ctx, v.root, time.Millisecond)
	must(t, err)
	v.write(t, strings.Replace(small, `"shards":16`, `"shards":17`, 1))
	deadline := time.Now().Add(5 * time.Second)
	for w.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if w.Err() == nil || !strings.Contains(w.Err().Error(), "17 shards") || w.Current().Version != 3 {
		t.Fatalf("err %v, version %d", w.Err(), w.Current().Version)
	}
	v.write(t, vector(t, "weighted"))
	select {
	case r := <-w.Changes():
		if r.Version != 12 || w.Err() != nil {
			t.Fatalf("version %d, err %v", r.Version, w.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the good version never came")
	}
}

// A directory that goes away keeps the last ring and says why; back, the error clears.
func TestAnErrorClearsWhenTheDirectoryComesBack(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ring")
	must(t, os.Mkdir(root, 0o755))
	v := &volume{root: root}
	v.write(t, vector(t, "small"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := Watch(ctx, root, time.Millisecond)
	must(t, err)
	if _, err := Watch(ctx, root, 0); err == nil {
		t.Fatal("a zero interval was accepted")
	}
	must(t, os.Rename(root, root+".away"))
	waitFor(t, func() bool { return w.Err() != nil })
	must(t, os.Rename(root+".away", root))
	waitFor(t, func() bool { return w.Err() == nil })
	if w.Current().Version != 3 {
		t.Fatalf("version %d", w.Current().Version)
	}
}

func waitFor(t *testing.T, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !done(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
