package ring

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

const testdata = "../testdata"

type expected struct {
	Version  int64            `json:"version"`
	Members  []string         `json:"members"`
	Draining []string         `json:"draining"`
	Cases    [][3]any         `json:"cases"`
	ShardsOf map[string][]int `json:"shardsOf"`
	Loads    map[string]float64 `json:"loads"`
	MemberAt []struct {
		Address string  `json:"address"`
		Port    *int    `json:"port"`
		Member  *string `json:"member"`
	} `json:"memberAt"`
}

// Every vector made by the operator's engine is answered as the operator answers it.
func TestVectors(t *testing.T) {
	dirs, err := os.ReadDir(filepath.Join(testdata, "valid"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	for _, dir := range dirs {
		t.Run(dir.Name(), func(t *testing.T) {
			path := filepath.Join(testdata, "valid", dir.Name())
			r, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			var want expected
			data, _ := os.ReadFile(filepath.Join(path, "expected.json"))
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			if r.Version != want.Version || !reflect.DeepEqual(r.Members, want.Members) ||
				len(r.Draining) != len(want.Draining) {
				t.Fatalf("version %d members %v draining %v", r.Version, r.Members, r.Draining)
			}
			for _, id := range append(append([]string{}, r.Members...), r.Draining...) {
				m, _ := r.Member(id)
				load, loaded := want.Loads[id]
				if (m.Load != nil) != loaded || (loaded && *m.Load != load) {
					t.Fatalf("%q: load %v, want %v (%v)", id, m.Load, load, loaded)
				}
			}
			for _, c := range want.Cases {
				key, shard := c[0].(string), int(c[1].(float64))
				var owners []string
				for _, o := range c[2].([]any) {
					owners = append(owners, o.(string))
				}
				if got := r.Shard(key); got != shard {
					t.Fatalf("%q: shard %d, want %d", key, got, shard)
				}
				if got := r.Owners(key); !reflect.DeepEqual(got, owners) {
					t.Fatalf("%q: owners %v, want %v", key, got, owners)
				}
				if r.Owner(key) != owners[0] {
					t.Fatalf("%q: owner %s", key, r.Owner(key))
				}
				for _, o := range owners {
					if !r.IsMine(key, o) {
						t.Fatalf("%q is not %s's", key, o)
					}
				}
				if r.IsMine(key, "nobody") {
					t.Fatalf("%q is nobody's", key)
				}
			}
			for member, shards := range want.ShardsOf {
				if got := r.ShardsOf(member); !reflect.DeepEqual(got, shards) {
					t.Fatalf("%s: shards %v, want %v", member, got, shards)
				}
			}
			for _, c := range want.MemberAt {
				port := 0
				if c.Port != nil {
					port = *c.Port
				}
				got, ok := r.MemberAt(c.Address, port)
				if ok != (c.Member != nil) || (ok && got != *c.Member) {
					t.Fatalf("%s:%d: %q %v, want %v", c.Address, port, got, ok, c.Member)
				}
			}
		})
	}
}

// Every file that breaks the format is refused, with a FormatError.
func TestInvalidFilesAreRefused(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testdata, "invalid", "*.json"))
	if len(files) < 20 {
		t.Fatalf("only %d invalid files", len(files))
	}
	for _, file := range files {
		data, _ := os.ReadFile(file)
		_, err := Parse(data)
		var refused *FormatError
		if !errors.As(err, &refused) || refused.Reason == "" {
			t.Errorf("%s: %v", filepath.Base(file), err)
		}
	}
}

func TestFind(t *testing.T) {
	r, err := Load(filepath.Join(testdata, "valid", "odd-identities"))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := r.Member("ключ/1")
	if !ok || m.Key == m.ID || m.Address == "" {
		t.Fatalf("%+v", m)
	}
	if id, err := r.Find("", m.Address, m.Port); err != nil || id != m.ID {
		t.Fatalf("%q %v", id, err)
	}
	if _, err := r.Find("not-there", "", 0); !errors.Is(err, ErrNotListed) {
		t.Fatal(err)
	}
}
