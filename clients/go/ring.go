// Package ring reads and follows a shardring ring (ring.json): which member serves which key.
//
// The format is specified in docs/ring-format.md of the shardring repository; this package is
// tested against the shared vectors in clients/testdata, as the operator and the Python client
// are. Standard library only.
//
//	r, err := ring.Load("/var/run/ring")      // a directory (kubelet's layout) or a ring.json
//	if r.IsMine(target, "scraper-1") { ... }   // owner, replica, or previous owner handing over
package ring

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"unicode/utf8"
)

// Format is the only format this package reads; KeyHash the only key hash.
const (
	Format  = "shardring.io/ring/v1"
	KeyHash = "md5-hashmod"
)

// FormatError says why a ring.json cannot be used: the first field that is wrong.
type FormatError struct{ Reason string }

func (e *FormatError) Error() string { return "ring.json: " + e.Reason }

func refuse(format string, args ...any) error {
	return &FormatError{Reason: fmt.Sprintf(format, args...)}
}

// Member is a member as ring.json lists it. Draining members own no shard (they may still
// serve shards they hand over).
type Member struct {
	ID       string
	Key      string  // its files' names in the ConfigMap (member.<key>); "" if not given
	Weight   float64 // > 0
	Zone     string  // "" if none
	Address  string  // "" if not registered with one
	Port     int     // 0 if none
	Draining bool
	// Load is, in a ring balanced by load, the load the member carries under this assignment
	// as measured when the version was made (in the unit of the load reports); nil otherwise.
	Load *float64
}

// Ring is one immutable ring version. Build it with Parse or Load; it is safe for concurrent use.
type Ring struct {
	Version           int64
	Hash              string // sha256:… of the assignment; agents acknowledge it
	SourceIndex       int64  // the source's position (ring.json's consulIndex)
	Shards            int
	ReplicationFactor int
	Algorithm         string
	Namespace, Name   string   // the ShardRing it was published for
	Members           []string // ids of the members that own shards, sorted
	Draining          []string // ids of members on their way out
	Handover          map[string][]int

	members    map[string]Member
	assignment [][]int
	handed     map[int][]string
	owned      map[string][]int
	ownedInit  sync.Once
}

// fields is a JSON object with its keys matched exactly (encoding/json's struct decoding would
// match "Shards" or "SHARDS" to shards, and merge a repeated key into the first one).
type fields map[string]json.RawMessage

func (f fields) has(name string) bool {
	raw, ok := f[name]
	return ok && string(raw) != "null"
}

// into decodes the field, when present and not null, into target.
func (f fields) into(name string, target any) error {
	if !f.has(name) {
		return nil
	}
	if err := json.Unmarshal(f[name], target); err != nil {
		return refuse("%s: %s", name, short(err.Error()))
	}
	return nil
}

func short(text string) string {
	if len(text) > 120 {
		return text[:120] + "…"
	}
	return text
}

// Parse reads ring.json. A document that breaks the format gives a *FormatError.
func Parse(data []byte) (*Ring, error) {
	if !utf8.Valid(data) {
		return nil, refuse("not UTF-8")
	}
	var doc fields
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		return nil, refuse("not a JSON object")
	}
	var format, keyHash string
	if err := doc.into("format", &format); err != nil || format != Format {
		return nil, refuse("format must be %q", Format)
	}
	if err := doc.into("keyHash", &keyHash); err != nil || (doc.has("keyHash") && keyHash != KeyHash) {
		return nil, refuse("keyHash is not %q: its shards cannot be computed", KeyHash)
	}
	r := &Ring{members: map[string]Member{}, Handover: map[string][]int{},
		handed: map[int][]string{}}
	var shards, replication, virtualNodes *int
	var ring struct{ Namespace, Name *string }
	var service json.RawMessage
	for _, err := range []error{
		doc.into("shards", &shards), doc.into("replicationFactor", &replication),
		doc.into("ringVersion", &r.Version), doc.into("consulIndex", &r.SourceIndex),
		doc.into("ringHash", &r.Hash), doc.into("algorithm", &r.Algorithm),
		doc.into("virtualNodes", &virtualNodes), doc.into("service", &service),
	} {
		if err != nil {
			return nil, err
		}
	}
	if shards == nil || *shards < 1 {
		return nil, refuse("shards must be an integer >= 1")
	}
	if replication == nil || *replication < 1 {
		return nil, refuse("replicationFactor must be an integer >= 1")
	}
	if r.Version < 0 || r.SourceIndex < 0 {
		return nil, refuse("ringVersion and consulIndex must be >= 0")
	}
	if virtualNodes != nil && *virtualNodes < 1 {
		return nil, refuse("virtualNodes must be >= 1")
	}
	if doc.has("service") && (len(service) == 0 || service[0] != '{') {
		return nil, refuse("service must be an object")
	}
	r.Shards, r.ReplicationFactor = *shards, *replication
	if doc.has("ring") {
		var entry fields
		if err := doc.into("ring", &entry); err != nil || entry == nil {
			return nil, refuse("ring must be an object")
		}
		if entry.into("namespace", &ring.Namespace) != nil || entry.into("name", &ring.Name) != nil {
			return nil, refuse("ring.namespace and ring.name must be strings")
		}
		if ring.Namespace != nil {
			r.Namespace = *ring.Namespace
		}
		if ring.Name != nil {
			r.Name = *ring.Name
		}
	}
	if !doc.has("members") {
		return nil, refuse("members must be a list")
	}
	var members, draining []fields
	if err := doc.into("members", &members); err != nil {
		return nil, err
	}
	if err := doc.into("draining", &draining); err != nil {
		return nil, err
	}
	for i, e := range members {
		m, err := member(e, fmt.Sprintf("members[%d]", i), false)
		if err != nil {
			return nil, err
		}
		if i > 0 && m.ID <= r.Members[i-1] {
			return nil, refuse("members must be sorted by id, each id once")
		}
		r.Members = append(r.Members, m.ID)
		r.members[m.ID] = m
	}
	for i, e := range draining {
		m, err := member(e, fmt.Sprintf("draining[%d]", i), true)
		if err != nil {
			return nil, err
		}
		if _, twice := r.members[m.ID]; twice {
			return nil, refuse("a draining member must not also be a member, nor be listed twice")
		}
		r.Draining = append(r.Draining, m.ID)
		r.members[m.ID] = m
	}
	if len(r.Members) < r.ReplicationFactor {
		return nil, refuse("replicationFactor %d needs at least as many members, not %d",
			r.ReplicationFactor, len(r.Members))
	}
	var assignment [][]*int
	if err := doc.into("assignment", &assignment); err != nil {
		return nil, err
	}
	if len(assignment) != r.Shards {
		return nil, refuse("assignment has %d rows for %d shards", len(assignment), r.Shards)
	}
	r.assignment = make([][]int, r.Shards)
	for shard, row := range assignment {
		if len(row) != r.ReplicationFactor {
			return nil, refuse("assignment[%d] must hold %d member indices", shard, r.ReplicationFactor)
		}
		r.assignment[shard] = make([]int, len(row))
		for j, i := range row {
			if i == nil || *i < 0 || *i >= len(r.Members) {
				return nil, refuse("assignment[%d] holds no member index at %d", shard, j)
			}
			for _, earlier := range r.assignment[shard][:j] {
				if earlier == *i {
					return nil, refuse("assignment[%d] holds member %d twice", shard, *i)
				}
			}
			r.assignment[shard][j] = *i
		}
	}
	var handover []fields
	if err := doc.into("handover", &handover); err != nil {
		return nil, err
	}
	for i, e := range handover {
		var member *string
		var shards []*int
		if e.into("member", &member) != nil || member == nil {
			return nil, refuse("handover[%d].member must be a string", i)
		}
		if e.into("shards", &shards) != nil || !e.has("shards") {
			return nil, refuse("handover[%d].shards must be a list of shards", i)
		}
		if _, listed := r.members[*member]; !listed {
			return nil, refuse("handover[%d].member must be a member or draining", i)
		}
		if _, twice := r.Handover[*member]; twice {
			return nil, refuse("handover[%d].member is listed twice", i)
		}
		list := []int{}
		for _, s := range shards {
			if s == nil || *s < 0 || *s >= r.Shards {
				return nil, refuse("handover[%d] names a shard the ring does not have", i)
			}
			list = append(list, *s)
		}
		sort.Ints(list)
		r.Handover[*member] = unique(list)
	}
	handing := make([]string, 0, len(r.Handover))
	for member := range r.Handover {
		handing = append(handing, member)
	}
	sort.Strings(handing)
	for _, member := range handing {
		for _, s := range r.Handover[member] {
			r.handed[s] = append(r.handed[s], member)
		}
	}
	return r, nil
}

func member(e fields, where string, draining bool) (Member, error) {
	if e == nil {
		return Member{}, refuse("%s must be an object", where)
	}
	var id, key, zone, address *string
	var weight, load *float64
	var port *int
	for _, err := range []error{e.into("id", &id), e.into("key", &key), e.into("zone", &zone),
		e.into("address", &address), e.into("weight", &weight), e.into("port", &port),
		e.into("load", &load)} {
		if err != nil {
			return Member{}, refuse("%s.%s", where, err.(*FormatError).Reason)
		}
	}
	if id == nil || *id == "" {
		return Member{}, refuse("%s.id must be a non-empty string", where)
	}
	m := Member{ID: *id, Weight: 1, Draining: draining}
	if weight != nil {
		if !(*weight > 0) || math.IsInf(*weight, 0) {
			return Member{}, refuse("%s.weight must be a finite number > 0", where)
		}
		m.Weight = *weight
	}
	if load != nil {
		if !(*load >= 0) || math.IsInf(*load, 0) {
			return Member{}, refuse("%s.load must be a finite number >= 0", where)
		}
		m.Load = load
	}
	if port != nil {
		if *port < 0 {
			return Member{}, refuse("%s.port must be >= 0", where)
		}
		m.Port = *port
	}
	if key != nil {
		m.Key = *key
	}
	if zone != nil {
		m.Zone = *zone
	}
	if address != nil {
		m.Address = *address
	}
	return m, nil
}

func unique(sorted []int) []int {
	out := sorted[:0]
	for i, v := range sorted {
		if i == 0 || v != sorted[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// ShardOf is uint64_be(md5(key)[8:16]) mod shards: Prometheus' hashmod of the key's bytes.
func ShardOf(key string, shards int) int {
	sum := md5.Sum([]byte(key))
	return int(binary.BigEndian.Uint64(sum[8:16]) % uint64(shards))
}

// Shard is the key's shard.
func (r *Ring) Shard(key string) int { return ShardOf(key, r.Shards) }

// Assigned is the shard's owners in this version, primary first.
func (r *Ring) Assigned(shard int) []string {
	owners := make([]string, 0, r.ReplicationFactor)
	for _, i := range r.assignment[shard] {
		owners = append(owners, r.Members[i])
	}
	return owners
}

// HandingOver is the previous owners still serving the shard until its new owners acknowledge
// this version (make-before-break); empty when the shard is not being handed over.
func (r *Ring) HandingOver(shard int) []string {
	return append([]string(nil), r.handed[shard]...)
}

// OwnersOf is everyone who serves the shard now: Assigned, then HandingOver.
func (r *Ring) OwnersOf(shard int) []string {
	return append(r.Assigned(shard), r.handed[shard]...)
}

// Owners is everyone who serves the key now. Serve the key if you are in it: during a handover
// old and new owner both do, so no key is dropped.
func (r *Ring) Owners(key string) []string { return r.OwnersOf(r.Shard(key)) }

// Owner is the key's primary owner.
func (r *Ring) Owner(key string) string { return r.Members[r.assignment[r.Shard(key)][0]] }

// IsMine says whether me serves the key now (any replica, or handing it over).
func (r *Ring) IsMine(key, me string) bool {
	shard := r.Shard(key)
	for _, i := range r.assignment[shard] {
		if r.Members[i] == me {
			return true
		}
	}
	for _, member := range r.handed[shard] {
		if member == me {
			return true
		}
	}
	return false
}

// ShardsOf is the shards the member serves now, ascending: owned and still handed over.
func (r *Ring) ShardsOf(member string) []int {
	r.ownedOnce()
	seen := map[int]bool{}
	shards := append([]int(nil), r.owned[member]...)
	for _, s := range shards {
		seen[s] = true
	}
	for _, s := range r.Handover[member] {
		if !seen[s] {
			shards = append(shards, s)
		}
	}
	sort.Ints(shards)
	if shards == nil {
		shards = []int{}
	}
	return shards
}

func (r *Ring) ownedOnce() {
	r.ownedInit.Do(func() {
		owned := map[string][]int{}
		for shard, row := range r.assignment {
			for _, i := range row {
				owned[r.Members[i]] = append(owned[r.Members[i]], shard)
			}
		}
		r.owned = owned
	})
}

// Member is a member or draining member by id.
func (r *Ring) Member(id string) (Member, bool) {
	m, ok := r.members[id]
	return m, ok
}

// MemberAt is the one member (or draining member) registered at address, and at port unless
// port is 0: a pod knows its IP and port without knowing its identity. False if none or several.
func (r *Ring) MemberAt(address string, port int) (string, bool) {
	found := ""
	count := 0
	for _, id := range append(append([]string(nil), r.Members...), r.Draining...) {
		m := r.members[id]
		if m.Address == address && address != "" && (port == 0 || m.Port == port) {
			found, count = id, count+1
		}
	}
	return found, count == 1
}

// ErrNotListed says this member is not in the ring version (not registered or healthy yet, or
// gone): serve nothing and wait for the next version.
var ErrNotListed = errors.New("not in this ring version")

// Find is this member's id, by identity (if not "") or by address and port.
func (r *Ring) Find(identity, address string, port int) (string, error) {
	if identity != "" {
		if _, ok := r.members[identity]; ok {
			return identity, nil
		}
		return "", fmt.Errorf("%q: %w %d", identity, ErrNotListed, r.Version)
	}
	if id, ok := r.MemberAt(address, port); ok {
		return id, nil
	}
	return "", fmt.Errorf("%s:%d: %w %d", address, port, ErrNotListed, r.Version)
}
