package ring

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// A mounted ConfigMap (and the ring agent's directory) is kubelet's layout: <dir>/..<timestamp>/
// holds one version's files, <dir>/..data links to the current one, <dir>/ring.json links to
// ..data/ring.json. A new version is a new directory and one rename of ..data, after which the
// old directory is deleted. Reading resolves ..data once and reads from what it resolved; if that
// version is deleted in between, it resolves again: never half of one version and half of another.
const (
	dataLink = "..data"
	ringJSON = "ring.json"
	attempts = 5
)

// resolve is the ring.json to open and a cheap stamp that changes with every new version.
func resolve(path string) (string, string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", "", err
	}
	if !info.IsDir() {
		return path, fileStamp(info), nil
	}
	target, err := os.Readlink(filepath.Join(path, dataLink))
	if err != nil { // a plain directory holding ring.json
		file := filepath.Join(path, ringJSON)
		info, err := os.Stat(file)
		if err != nil {
			return "", "", err
		}
		return file, fileStamp(info), nil
	}
	return filepath.Join(path, target, ringJSON), "link:" + target, nil
}

func fileStamp(info fs.FileInfo) string {
	return fmt.Sprintf("file:%d:%d", info.ModTime().UnixNano(), info.Size())
}

func read(path string) ([]byte, string, error) {
	for i := 0; i < attempts; i++ {
		file, stamp, err := resolve(path)
		if err != nil {
			return nil, "", err
		}
		data, err := os.ReadFile(file)
		if err == nil {
			return data, stamp, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || file == filepath.Join(path, ringJSON) || file == path {
			return nil, "", err // not a swapped directory: the file is really not there
		}
	}
	return nil, "", fmt.Errorf("%s was swapped %d times while being read", path, attempts)
}

// Load reads the ring in path: a ring.json file, or a directory holding one (kubelet's layout
// or a plain directory).
func Load(path string) (*Ring, error) {
	data, _, err := read(path)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Watcher follows a ring directory (or file) and sends each new version on Changes.
type Watcher struct {
	path     string
	interval time.Duration
	changes  chan *Ring

	mu      sync.Mutex
	current *Ring
	stamp   string
	err     error
}

// Watch loads the ring in path (an error if there is none or it is not valid) and follows it,
// checking every interval, until ctx is done; then Changes is closed.
func Watch(ctx context.Context, path string, interval time.Duration) (*Watcher, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("ring.Watch: interval must be > 0, not %v", interval)
	}
	data, stamp, err := read(path)
	if err != nil {
		return nil, err
	}
	r, err := Parse(data)
	if err != nil {
		return nil, err
	}
	w := &Watcher{path: path, interval: interval, changes: make(chan *Ring, 1), current: r,
		stamp: stamp}
	go w.run(ctx)
	return w, nil
}

// Current is the last valid ring.
func (w *Watcher) Current() *Ring {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

// Err says why the newest version was not taken (nil when it was): a version that is not a
// valid ring is refused, and the last valid one stays current.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Changes receives each new valid version. A slow receiver gets the newest, not every one.
func (w *Watcher) Changes() <-chan *Ring { return w.changes }

func (w *Watcher) run(ctx context.Context) {
	defer close(w.changes)
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if r := w.refresh(); r != nil {
			select { // keep only the newest for a receiver that has not caught up
			case <-w.changes:
			default:
			}
			w.changes <- r
		}
	}
}

// refresh takes a new version if there is one, and returns it.
func (w *Watcher) refresh() *Ring {
	if _, stamp, err := resolve(w.path); err == nil && stamp == w.stamp {
		return nil
	}
	data, stamp, err := read(w.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil { // gone for now (a volume being remounted): keep the last ring
		w.err = err
		w.stamp = "" // read again once it is back, which clears the error
		return nil
	}
	if stamp == w.stamp {
		return nil
	}
	w.stamp = stamp
	r, err := Parse(data)
	if err != nil {
		w.err = err
		return nil
	}
	w.err = nil
	changed := r.Version != w.current.Version || r.Hash != w.current.Hash
	w.current = r
	if !changed {
		return nil
	}
	return r
}
